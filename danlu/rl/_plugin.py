"""The reinforcement-learning capability's registration (no torch, no gymnasium): recipes with an
``env.name`` make agent runs."""
from . import _schema  # noqa: F401  (registers this capability's recipe sections)
from .._extras import Extra, register_extra, register_loopless
from ..diagnose._story import register_story
from ..training._runs import register_run_kind


def is_agent(recipe) -> bool:
    env = recipe.get("env") or {}
    return bool(env.get("name"))


register_run_kind("agent", "danlu.rl._runs:AgentRuns", recipe=is_agent, order=10)
register_story(is_agent, "danlu.rl._story:story_rl")   # `danlu diagnose` on an agent's run: its reward curve
register_extra(Extra("reinforcement learning (env.name: {env})", "rl", ("gymnasium",), is_agent))
register_loopless(is_agent, lambda r: f"an agent's run (env.name: {r['env']['name']}) writes metrics.jsonl itself")
