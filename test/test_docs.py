# SPDX-License-Identifier: Apache-2.0
"""The manual works as written: its Python examples run, its links lead somewhere.

README.md is the front door and docs/ the rest; a user copies their code blocks and follows
their links, so both are checked from the repository root, as the user's checkout has them.
"""

import glob
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

PAGES = [os.path.join(REPO, 'README.md'), *sorted(glob.glob(os.path.join(REPO, 'docs', '*.md')))]
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')


def _blocks(path: str, language: str) -> list:
    with open(path, encoding='utf-8') as stream:
        text = stream.read()
    return re.findall(rf'^```{language}\n(.*?)^```$', text, re.MULTILINE | re.DOTALL)


def _anchors(path: str) -> set:
    """GitHub's anchors of a Markdown file's headings."""
    anchors, fence = set(), False
    with open(path, encoding='utf-8') as stream:
        for line in stream:
            if line.startswith('```'):
                fence = not fence
            elif not fence and line.startswith('#'):
                title = line.lstrip('#').strip().lower()
                anchors.add(re.sub(r'[^\w\- ]', '', title).replace(' ', '-'))
    return anchors


def test_every_relative_link_leads_to_a_file_and_heading():
    broken = []
    for page in PAGES:
        with open(page, encoding='utf-8') as stream:
            text = stream.read()
        for target in LINK.findall(text):
            if re.match(r'[a-z]+://', target):
                continue
            path, _, anchor = target.partition('#')
            resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path \
                else page
            if not os.path.exists(resolved):
                broken.append(f'{os.path.relpath(page, REPO)}: {target} (no such file)')
            elif anchor and anchor not in _anchors(resolved):
                broken.append(f'{os.path.relpath(page, REPO)}: {target} (no such heading)')
    assert not broken, '\n'.join(broken)


def test_every_page_is_linked_from_the_readme():
    with open(PAGES[0], encoding='utf-8') as stream:
        readme = stream.read()
    for page in PAGES[1:]:
        assert f'(docs/{os.path.basename(page)})' in readme, page


@pytest.mark.slow
@pytest.mark.parametrize('page', [p for p in PAGES if _blocks(p, 'python')],
                         ids=lambda p: os.path.relpath(p, REPO))
def test_python_examples_run_from_the_checkout(page):
    """Each ```python block runs as a user's script in the repository root."""
    for code in _blocks(page, 'python'):
        result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, f'{page}:\n{code}\n{result.stderr[-3000:]}'
