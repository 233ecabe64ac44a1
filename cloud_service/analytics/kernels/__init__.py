"""numba kernels: arrays and scalars in, arrays out; integer codes, no I/O, ``cache=True``.

numba's on-disk cache is invalidated by a change to the file that defines a function, not by a
change to a kernel it calls from another file (numba issue #6845): a stale caller would keep
the old callee's machine code. So at import we hash every kernel source together and, when the
hash differs from the one stamped beside the cache, drop this package's cached kernels.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path


def _invalidate_stale_cache() -> None:
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for src in sorted(here.glob("*.py")):
        digest.update(src.name.encode())
        digest.update(src.read_bytes())
    cache = here / "__pycache__"
    stamp = cache / "kernels.sha256"
    with contextlib.suppress(OSError):
        if stamp.exists() and stamp.read_text() == digest.hexdigest():
            return
        for f in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
            f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest.hexdigest())


_invalidate_stale_cache()
