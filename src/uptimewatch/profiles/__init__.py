"""Probe profiles: ``probes/*.yaml`` compiled into what the SNMP poller fetches and how it decodes.

The format is documented in ``probes/README.md``. Runtime never parses MIBs: profiles hold numeric
OIDs, types, scales, value maps and the normalized fields they feed.
"""

from .catalog import (
    ProfileCatalog,
    ProfileError,
    cli_profiles_check,
    default_profiles_dir,
    load_files,
    load_profiles,
    profile_files,
)
from .compiled import SYS_OBJECT_ID, CompiledProfile, decode
from .compiler import Issue

__all__ = [
    "SYS_OBJECT_ID",
    "CompiledProfile",
    "Issue",
    "ProfileCatalog",
    "ProfileError",
    "cli_profiles_check",
    "decode",
    "default_profiles_dir",
    "load_files",
    "load_profiles",
    "profile_files",
]
