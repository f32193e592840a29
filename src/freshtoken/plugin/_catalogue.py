"""The scenario catalogue as pytest items: one item per scenario, run against the chosen subject."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from freshtoken._errors import ConfigError, InvariantViolation
from freshtoken.plugin._hooks import timeline_key
from freshtoken.plugin._html import scenario_result_key
from freshtoken.plugin._options import PluginOptions, options_key

if TYPE_CHECKING:
    from freshtoken.scenarios import Scenario

__all__ = ["CatalogueCollector", "ScenarioItem", "collect_catalogue"]

COLLECTOR_NAME = "freshtoken-catalogue"


def collect_catalogue(session: pytest.Session, options: PluginOptions) -> list[pytest.Item]:
    """Load the catalogue (built-in plus extra directories) and return one item per scenario."""
    # An explicit id reads like a file's ("freshtoken-catalogue::<scenario>"), which -k and
    # node-id selection on the command line both understand.
    collector = CatalogueCollector.from_parent(session, name=COLLECTOR_NAME, nodeid=COLLECTOR_NAME)
    # Report the collection like any other, so counts, --collect-only and errors read as usual.
    report = collector.ihook.pytest_make_collect_report(collector=collector)
    session.ihook.pytest_collectreport(report=report)
    return [node for node in report.result if isinstance(node, pytest.Item)]


class CatalogueCollector(pytest.Collector):
    """Collects the built-in scenario catalogue and any ``--freshtoken-catalogue-dir``."""

    def collect(self) -> list[pytest.Item]:
        from freshtoken.scenarios import load_catalogue

        options = self.config.stash[options_key]
        try:
            scenarios = load_catalogue(options.catalogue_dirs)
        except ConfigError as exc:
            raise self.CollectError(f"freshtoken catalogue: {exc}") from exc
        return [
            ScenarioItem.from_parent(self, name=scenario.name, scenario=scenario)
            for scenario in scenarios
        ]


class ScenarioItem(pytest.Item):
    """One catalogue scenario, run on fresh fakes against the subject ``--freshtoken-subject``."""

    def __init__(self, *, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.add_marker(pytest.mark.freshtoken_scenario)

    def runtest(self) -> None:
        from freshtoken.scenarios import get_subject, run_scenario_sync

        options = self.config.stash[options_key]
        subject = get_subject(options.subject, command=options.command or None)
        result = run_scenario_sync(self.scenario, subject)
        self.stash[timeline_key] = result.timeline
        self.stash[scenario_result_key] = result
        if result.not_applicable is not None:
            pytest.skip(f"not applicable to {result.subject}: {result.not_applicable}")
        if not result.passed:
            lines = [f"{self.scenario.name} on {result.subject}: FAILED"]
            lines += [f"  {check.name}: {check.reason}" for check in result.failures]
            raise InvariantViolation("\n".join(lines))

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str:
        if isinstance(excinfo.value, InvariantViolation):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        source = Path(self.scenario.source) if self.scenario.source else self.path
        return source, None, f"freshtoken scenario {self.scenario.name}"
