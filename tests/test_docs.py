"""Every command in README.md and docs/ runs, as written (issue 28).

The fenced ```bash, ```sh, ```console and ```python blocks of each page run in order, in a fresh folder
of the page's own (a page's blocks build on each other, pages never do), with the sizes the page
shows. A shell block whose every line is `frame ARGS` (no pipe, redirection, `$`, `;` or `&&`) runs in
this process through `run_frame` (torch is imported once for the whole test); any other shell block
runs as `bash -euo pipefail` with this interpreter's bin folder first on PATH (each `frame` in it a new
process that imports torch again: keep `frame` lines in blocks of their own), and the folder it ends
in (`cd blobs`) is where the page's next block starts. A python block runs in this process too, as
`python -c` would in the page's folder (that folder first on sys.path, its modules forgotten after).
A block fails the test on a non-zero exit.

Marks, an HTML comment on the line right before a fence:

    <!-- docs-test: skip: REASON -->   not run; REASON is the skip message (say why: full size, a file
                                       the reader has, a service)
    <!-- docs-test: slurm -->          needs a SLURM cluster with a GPU partition: skipped here, with that reason
    <!-- docs-test: gpu -->            needs a GPU: run only where torch sees one
    <!-- docs-test: output -->         on a ```text block: each of its lines (`...` matches anything) must
                                       appear in the output of the block before it

Other fences (```yaml, ```text without the mark, bare ```) are shown, never run.
"""

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, _forget_project_modules, frame_env, run_frame

SHELL = ("bash", "sh", "console")
RUN = (*SHELL, "python")
MARK = re.compile(r"<!--\s*docs-test:\s*(skip|slurm|gpu|output)\s*(?::\s*(.*?))?\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")
PLAIN_FRAME = re.compile(r"^frame\s[^|<>;&$`]*$")


@dataclass
class Block:
    page: str
    line: int
    language: str
    text: str
    mark: str | None = None  # skip | slurm | gpu | output
    reason: str = ""

    @property
    def skipped(self) -> str | None:
        """Why this block does not run here, or None."""
        if self.mark == "skip":
            return self.reason
        if self.mark == "slurm":
            return "needs a SLURM cluster with GPUs"
        if self.mark == "gpu" and not _cuda():
            return "needs a GPU"
        return None


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a page that run or check output, in order, with their marks."""
    found, lines, number = [], path.read_text().splitlines(), 0
    while number < len(lines):
        start = FENCE.match(lines[number].strip()) if lines[number].lstrip().startswith("```") else None
        if start is None:
            number += 1
            continue
        indent = len(lines[number]) - len(lines[number].lstrip())
        end = next(i for i in range(number + 1, len(lines)) if lines[i].strip() == "```")
        text = "\n".join(line[indent:] for line in lines[number + 1 : end])
        mark = MARK.search(lines[number - 1]) if number else None
        language = start.group(1)
        if language in RUN or (mark and mark.group(1) == "output"):
            block = Block(str(path.relative_to(REPO)), number + 1, language, text)
            if mark:
                block.mark, block.reason = mark.group(1), mark.group(2) or ""
            found.append(block)
        number = end + 1
    return found


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _commands(text: str) -> list[str]:
    """A shell block's commands: continuation lines joined, `$ ` prompts and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip().removeprefix("$ ") for line in joined.splitlines() if line.strip()]


def _run(block: Block, cwd: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """Run one block in `cwd`; returns its result and the folder the next block starts in."""
    if block.language == "python":
        return _python(block.text, cwd), cwd
    commands = [line for line in _commands(block.text) if not line.startswith("#")]
    if all(PLAIN_FRAME.match(line) for line in commands):
        outputs, result = [], None
        for line in commands:
            result = run_frame(shlex.split(line, comments=True)[1:], cwd=cwd)
            outputs.append(result.stdout + result.stderr)
            if result.returncode:
                break
        assert result is not None, f"{block.page}:{block.line}: an empty block"
        return subprocess.CompletedProcess(commands, result.returncode, "\n".join(outputs), ""), cwd
    where = cwd / ".docs-test-cwd"
    script = f"set -euo pipefail\n{block.text}\npwd > {shlex.quote(str(where))}\n"
    env = frame_env({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    result = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    after = Path(where.read_text().strip()) if where.exists() else cwd
    where.unlink(missing_ok=True)
    return result, after


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """A python block run in this process as `python -c` would run it in `cwd` (the folder first on
    sys.path, output captured, a traceback and status 1 on an exception); the working directory,
    sys.path and the page's own modules are put back afterwards, as `run_frame` does."""
    saved_cwd, saved_path, saved_modules = os.getcwd(), list(sys.path), set(sys.modules)
    out, code_status = io.StringIO(), 0
    os.chdir(cwd)
    sys.path.insert(0, str(cwd))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                exec(compile(code, "<docs block>", "exec"), {"__name__": "__main__"})
            except SystemExit as exit:
                code_status = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
            except BaseException:
                traceback.print_exc()
                code_status = 1
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        _forget_project_modules(saved_modules)
    return subprocess.CompletedProcess(["python"], code_status, out.getvalue(), "")


def _shows(expected: str, output: str) -> list[str]:
    """The lines of `expected` that `output` lacks (whitespace collapsed; `...` matches anything)."""
    seen = [" ".join(line.split()) for line in output.splitlines()]
    missing = []
    for line in filter(None, (" ".join(line.split()) for line in expected.splitlines())):
        pattern = re.compile(".*".join(re.escape(part) for part in line.split("...")))
        if not any(pattern.search(have) for have in seen):
            missing.append(line)
    return missing


# pages whose blocks take more than ~20 s on a loaded 2-core machine (processes of their own, 3D volumes,
# a whole tutorial): `make test` runs them, `make test-fast` leaves them out
SLOW = {"README.md", "docs/tutorial.md", "docs/howto/monai.md", "docs/howto/multinode.md"}
PAGES = [
    pytest.param(path, marks=[pytest.mark.slow] if str(path.relative_to(REPO)) in SLOW else [])
    for path in pages()
    if any(b.language in RUN for b in blocks(path))
]


@pytest.mark.parametrize("page", PAGES, ids=lambda path: str(path.relative_to(REPO)))
def test_every_block_of_the_page_runs(page, tmp_path):
    cwd, last, ran, skipped = tmp_path, None, 0, []
    for block in blocks(page):
        where = f"{block.page}:{block.line}"
        if block.mark == "output":
            if last is not None:  # the block it shows the output of ran
                missing = _shows(block.text, last.stdout + last.stderr)
                assert not missing, f"{where}: the output lacks {missing}\n{last.stdout[-3000:]}{last.stderr[-3000:]}"
            continue
        if block.skipped:
            skipped.append(f"{where} ({block.skipped})")
            last = None
            continue
        last, cwd = _run(block, cwd)
        ran += 1
        assert last.returncode == 0, (
            f"{where}: exit {last.returncode}\n{block.text}\n--- output:\n{last.stdout[-4000:]}\n{last.stderr[-4000:]}"
        )
    print(f"{page.relative_to(REPO)}: {ran} blocks ran, {len(skipped)} skipped: {skipped}")
    if not ran:
        pytest.skip(f"every block is marked: {skipped}")


def test_every_mark_says_why_and_stands_before_a_block():
    """A skip without a reason, or a mark that marks nothing (a typo, a blank line between), hides a block."""
    for page in pages():
        lines = page.read_text().splitlines()
        for number, line in enumerate(lines):
            if "docs-test" not in line:
                continue
            mark = MARK.search(line)
            assert mark, f"{page}:{number + 1}: not a docs-test mark: {line}"
            assert mark.group(1) != "skip" or mark.group(2), f"{page}:{number + 1}: a skip says why"
            following = lines[number + 1].strip() if number + 1 < len(lines) else ""
            assert following.startswith("```"), f"{page}:{number + 1}: a mark stands right before a fence"


def test_slow_pages_exist():
    """A renamed page must not leave its slow mark behind (and run in `make test-fast`)."""
    assert all((REPO / page).is_file() for page in SLOW)


def test_the_tutorial_is_collected_whole():
    """The tutorial runs from an empty folder: none of its blocks may be skipped."""
    tutorial = blocks(REPO / "docs" / "tutorial.md")
    assert sum(block.language in RUN for block in tutorial) >= 8
    assert not [block for block in tutorial if block.skipped]
