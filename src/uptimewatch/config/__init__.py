"""Configuration: schema (models), YAML loading with file:line errors (loader), defaults (resolve)."""

from .models import Config
from .resolve import IcmpTarget, ResolvedDevice, SnmpTarget, resolve_all

__all__ = ["Config", "IcmpTarget", "ResolvedDevice", "SnmpTarget", "resolve_all"]
