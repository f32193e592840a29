from __future__ import annotations

import pytest
from plugin_helpers import write_ini


@pytest.fixture
def downstream(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project in auto mode."""
    write_ini(pytester)
    return pytester
