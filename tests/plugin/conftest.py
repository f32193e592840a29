from __future__ import annotations

# Imported here, before any in-process pytester run: a run restores sys.modules afterwards, and
# cryptography (under trustme) first imported inside one and then again inside another has two
# copies of its classes ("curve must be an EllipticCurve instance"). The harness and trio, once
# loaded here, are not loaded again by every run either.
import pytest
import trio  # noqa: F401
import trustme  # noqa: F401
from plugin_helpers import write_ini

import freshtoken.fakes
import freshtoken.plugin._fixtures
import freshtoken.scenarios  # noqa: F401


@pytest.fixture
def downstream(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project in auto mode."""
    write_ini(pytester)
    return pytester
