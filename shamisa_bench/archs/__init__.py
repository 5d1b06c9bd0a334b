"""pyiqa architectures shipped by shamisa-bench (plain ``nn.Module`` classes).

Nothing here touches pyiqa's registries; :mod:`shamisa_bench.iqa.plugin` registers
:class:`shamisa_bench.archs.shamisa_arch.SHAMISA` with ``ARCH_REGISTRY``.
"""

__all__: list[str] = []
