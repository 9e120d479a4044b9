"""Transfer: reuse what a model learned — LoRA adapters, hypernetworks, graph and category embeddings.

The model kind ``hypernetwork`` is registered by ``_plugin`` (loaded through danlu._plugins).
"""
from .._lazy import lazy_getattr

_LAZY = {  # public name -> private module (most import torch: loaded on first use)
    "categorical_embeddings": "_categorical",
    "pca_2d": "_categorical",
    "plot_categorical_embeddings": "_categorical",
    "embed_graph_file": "_graph",
    "graph_embed": "_graph",
    "random_walks": "_graph",
    "read_edges": "_graph",
    "skipgram_pairs": "_graph",
    "write_embeddings": "_graph",
    "GeneratedMLP": "_hyper",
    "HyperNetwork": "_hyper",
    "build_hypernetwork": "_hyper",
    "LoRALinear": "_lora",
    "add_lora": "_lora",
    "head_name": "_lora",
    "load_adapters": "_lora",
    "lora_from_recipe": "_lora",
    "lora_state_dict": "_lora",
    "merge_lora": "_lora",
    "save_adapters": "_lora",
    "trainable_parameters": "_lora",
    "unmerge_lora": "_lora",
    "SentenceEncoder": "_backbone",
    "TextClassifier": "_backbone",
    "encode_texts": "_backbone",
    "minilm_path": "_backbone",
    "tokenize": "_backbone",
    "TextPipeline": "_text",
    "is_text_run": "_text",
    "prepare_text": "_text",
    "read_text_csv": "_text",
    "GradualUnfreeze": "_finetune",
    "finetune": "_finetune",
    "load_text_model": "_finetune",
    "Embedding": "_embed",
    "embed": "_embed",
    "map_2d": "_embed",
    "nearest_neighbours": "_embed",
    "penultimate": "_embed",
    "plot_map": "_embed",
    "write_neighbours": "_embed",
    "write_vectors": "_embed",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = sorted(_LAZY)
