"""Transfer: reuse what a model learned — LoRA adapters, hypernetworks, graph and category embeddings.

Importing this package registers the model kind ``hypernetwork``.
"""
from ._categorical import categorical_embeddings, pca_2d, plot_categorical_embeddings
from ._graph import embed_graph_file, graph_embed, random_walks, read_edges, skipgram_pairs, write_embeddings
from ._hyper import GeneratedMLP, HyperNetwork, build_hypernetwork
from ._lora import (
    LoRALinear,
    add_lora,
    head_name,
    load_adapters,
    lora_from_recipe,
    lora_state_dict,
    merge_lora,
    save_adapters,
    trainable_parameters,
    unmerge_lora,
)
from ._backbone import SentenceEncoder, TextClassifier, encode_texts, minilm_path, tokenize
from ._text import TextPipeline, is_text_run, prepare_text, read_text_csv
from ._finetune import GradualUnfreeze, finetune, load_text_model
from ._embed import Embedding, embed, map_2d, nearest_neighbours, penultimate, plot_map, write_neighbours, write_vectors
