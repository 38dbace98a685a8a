"""No import cycles in the project's packages (the graph grimp builds, as import-linter does)."""

from __future__ import annotations

import grimp
import pytest

PACKAGES = ("domain", "application", "projections", "interfaces")


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """For each module importing another that imports it back, however indirectly: the loop."""
    found = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                found.append([importer, *back])
    return found


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # Imports made only for type checking count too: they tie the modules together all the same.
    return grimp.build_graph(*PACKAGES)


def test_no_module_imports_itself_back_through_others(graph):
    assert cycles(graph) == []


def test_the_check_sees_a_cycle_when_there_is_one():
    graph = grimp.build_graph(*PACKAGES)
    graph.add_import(importer="domain.base", imported="interfaces.bootstrap")
    assert any(loop[0] == "domain.base" for loop in cycles(graph))
