"""`workflow.patched` ids, with the release each shipped in.

1.0 is the baseline: its stored histories (tests/histories/) replay on the code as it is, with no patch. From
1.0 on, a change that would make a running workflow issue other commands is guarded by `workflow.patched(ID)`
with an id listed here, and the histories of both paths are kept; an id leaves the list (with its old branch)
once no run of a release before it can still be open."""

from __future__ import annotations

PATCHES: dict[str, str] = {}
"""patch id -> the release it shipped in, oldest first."""
