"""``atomicops.identity``, as documented: the client identity helpers live in
:mod:`atomicops.web.identity`; this module keeps the documented import path."""

from atomicops.web.identity import *  # noqa: F403
from atomicops.web.identity import __all__  # noqa: F401
