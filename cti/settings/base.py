"""What every section model of the configuration shares: frozen, no unknown keys, seconds > 0.

Each section module (``schema``, ``dialplan``, ``http``, ``workorders``) builds its models
on these, so a typo in any section is an error and no setting changes after loading.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import ConfigDict, Field

__all__ = ["FROZEN", "Seconds"]


FROZEN: Final = ConfigDict(frozen=True, extra="forbid")

Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
