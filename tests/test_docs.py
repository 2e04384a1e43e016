"""The documentation cannot drift from the code: the settings table is generated from
alize/config.py; the README stays a front page whose links lead somewhere."""

import re

from alize.config import settings_table
from tests.server import ROOT


def test_the_settings_table_is_the_one_config_py_generates():
    doc = (ROOT / "docs" / "settings.md").read_text()
    shown = doc.split("<!-- settings:begin -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert shown == settings_table(), "regenerate it: python -m alize.config"


def test_the_readme_is_a_front_page_whose_links_exist():
    readme = (ROOT / "README.md").read_text()
    assert len(readme) < 12_000
    assert "make serve" in readme and "make test" in readme
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target
    for doc in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+)\)", doc.read_text()):
            if not target.startswith("http"):
                assert (doc.parent / target).exists(), (doc.name, target)
