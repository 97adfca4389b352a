"""SB3-style agents we own, and the factory that builds any configured agent for an env."""

from hydrarl.agents.factory import build_agent

__all__ = ["build_agent"]
