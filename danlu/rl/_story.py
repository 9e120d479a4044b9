"""The story of an RL run, told from its files (for ``danlu diagnose RUN`` on an RL run).

Reads recipe.yaml, metrics.jsonl, events.jsonl and summary.json; imports neither torch nor
gymnasium. Events keep their facts, so a run can be told in English or Chinese whatever the
language it was trained in.
"""
from __future__ import annotations

from pathlib import Path

from .._jsonl import read_jsonl
from ..errors import UserError
from ._diagnose import PROBLEMS, hint, message

_T = {
    "run": ("Run {name}: PPO agent in {env}, seed {seed}", "运行 {name}：{env} 中的 PPO 智能体，随机种子 {seed}"),
    "trained": ("Trained {updates} updates, {steps:,} environment steps, {episodes} episodes; mean return of the "
                "last 100 training episodes {first} -> {last} (best {best}).",
                "训练了 {updates} 次更新、{steps:,} 个环境步、{episodes} 个回合；最近 100 个训练回合的平均回报 "
                "{first} -> {last}（最佳 {best}）。"),
    "unfinished": ("The run has not finished (no summary.json); continue it with `danlu resume {run}`.",
                   "这次运行尚未结束（没有 summary.json）；可用 `danlu resume {run}` 继续。"),
    "final": ("Greedy evaluation over {episodes} episodes on unseen seeds: mean return {mean} (threshold {solved}: "
              "{verdict}).", "在未见过的种子上用贪心策略评估 {episodes} 个回合：平均回报 {mean}（阈值 {solved}：{verdict}）。"),
    "verdict": (("solved", "not solved", "none"), ("已解决", "未解决", "无")),
    "happened": ("What happened", "经过"),
    "quiet": ("Nothing remarkable: the reward curve shows no collapse, plateau or early loss of exploration.",
              "没有异常：回报曲线没有崩塌、停滞或过早失去探索。"),
    "try": ("What to try next", "下一步可以试试"),
    "try_nothing": ("Nothing needs fixing.", "没有需要修正的地方。"),
    "train_longer": ("The agent did not reach the threshold: train longer, e.g. rl.steps: {steps} -> {more}.",
                     "智能体没有达到阈值：训练更久，例如 rl.steps: {steps} -> {more}。"),
    "at": ("step {step:,}", "第 {step:,} 步"),
}


def _t(key: str, lang: str):
    return _T[key][1 if lang == "zh" else 0]


def _num(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def story_rl(run_dir: str | Path, lang: str = "en") -> str:
    """What an RL run did, what the reward curve showed, and what to turn next."""
    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file():
        raise UserError(f"{run_dir}: not a danlu run directory (no recipe.yaml); give the folder that "
                        f"`danlu train` created, e.g. runs/<name>")
    import yaml

    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    rows = read_jsonl(run_dir / "metrics.jsonl")
    events = read_jsonl(run_dir / "events.jsonl")
    lines = [_t("run", lang).format(name=recipe.get("name") or run_dir.name, env=recipe["env"]["name"],
                                    seed=recipe.get("seed", 0))]
    if rows:
        means = [r["mean_return_100"] for r in rows if r.get("mean_return_100") is not None]
        last = rows[-1]
        lines.append(_t("trained", lang).format(updates=last["update"], steps=last["step"], episodes=last["episodes"],
                                                first=_num(means[0] if means else None),
                                                last=_num(means[-1] if means else None),
                                                best=_num(last.get("best_mean_return_100"))))
    summary_path = run_dir / "summary.json"
    unsolved = False
    if summary_path.is_file():
        from .._integrity import read_json, require

        summary = read_json(summary_path)   # refused unless it matches its checksum
        require(summary_path, {"test": dict}, summary)
        test = summary["test"]
        verdicts = _t("verdict", lang)
        verdict = verdicts[2] if test["solved"] is None else verdicts[0 if test["solved"] else 1]
        unsolved = test["solved"] is False
        lines.append(_t("final", lang).format(episodes=test["episodes"], mean=_num(test["mean_return"]),
                                              solved=_num(test["solved_return"]), verdict=verdict))
    else:
        lines.append(_t("unfinished", lang).format(run=run_dir))
    lines += ["", _t("happened", lang)]
    sep = "：" if lang == "zh" else ": "
    lines += [f"  {_t('at', lang).format(step=e['step'])}{sep}{message(e['kind'], lang, e)}" for e in events] \
        or [f"  {_t('quiet', lang)}"]
    tries = [hint(kind, lang) for kind in dict.fromkeys(e["kind"] for e in events if e["kind"] in PROBLEMS)]
    if unsolved and not tries:
        steps = recipe["rl"]["steps"]
        tries.append(_t("train_longer", lang).format(steps=steps, more=2 * steps))
    lines += ["", _t("try", lang)]
    lines += [f"  {text}" for text in tries] or [f"  {_t('try_nothing', lang)}"]
    return "\n".join(lines)
