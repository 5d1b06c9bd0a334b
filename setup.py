"""One build step that ``pyproject.toml`` cannot declare: ship ``_shamisa_bench_pyiqa.pth``.

Everything else about the package is declared in ``pyproject.toml``. The ``.pth`` file
makes ``import pyiqa`` alone know the SHAMISA metrics (see ``_shamisa_bench_pyiqa.py``);
it must sit at the top of site-packages, where setuptools puts modules and packages but
no other file. :class:`build_pyiqa_hook`, a sub-command of ``build``, puts it there:

* ``pip install .`` (a wheel): into ``build_lib``, whose whole tree the wheel holds;
* ``pip install -e .`` (an editable wheel): setuptools builds packages in place and takes
  the wheel's other files from the folder it unpacks the wheel into, which it sets as
  the ``install`` command's ``install_lib``; the file is written there.

The module ``_shamisa_bench_pyiqa`` itself is a ``py-modules`` entry of ``pyproject.toml``,
installed (or, editable, found) like the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from setuptools import Command, setup
from setuptools.command.build import build

PTH = "_shamisa_bench_pyiqa.pth"


class build_pyiqa_hook(Command):
    """Copy ``_shamisa_bench_pyiqa.pth`` to the top of the (editable) wheel."""

    description = f"put {PTH} at the top of site-packages"
    user_options: ClassVar[list[tuple[str, str | None, str]]] = []

    def initialize_options(self) -> None:
        self.build_lib: str | None = None
        self.editable_mode = False  # set by setuptools' editable_wheel

    def finalize_options(self) -> None:
        self.set_undefined_options("build", ("build_lib", "build_lib"))

    def _target(self) -> Path:
        if self.editable_mode:
            return Path(self.get_finalized_command("install").install_lib) / PTH
        return Path(self.build_lib) / PTH

    def run(self) -> None:
        self.copy_file(PTH, str(self._target()), preserve_mode=False)

    def get_outputs(self) -> list[str]:
        return [] if self.editable_mode else [str(self._target())]

    def get_output_mapping(self) -> dict[str, str]:
        return {}

    def get_source_files(self) -> list[str]:
        return [PTH]


class build_with_pyiqa_hook(build):
    """``build``, then :class:`build_pyiqa_hook`."""

    sub_commands: ClassVar[list[tuple[str, object]]] = [*build.sub_commands, ("build_pyiqa_hook", None)]


setup(cmdclass={"build": build_with_pyiqa_hook, "build_pyiqa_hook": build_pyiqa_hook})
