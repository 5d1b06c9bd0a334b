"""The network pretraining trains: encoder + projector + relation graph, as one module.

:class:`PretrainNet` holds the :class:`~shamisa_bench.model.projector.EncoderWithProjector`
(encoder and projector) and the :class:`~shamisa_bench.graphs.RelationGraph` (prototypes and
branch aggregator), so that DistributedDataParallel synchronises every trainable parameter;
its ``state_dict`` is what a pretraining checkpoint stores under ``net``.
:func:`encoder_stages` cuts an encoder's trunk into the stages ``freeze_stages`` counts;
:func:`batchnorm_layers` lists a module's BatchNorm layers (the ones ``freeze_bn`` holds).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from shamisa_bench.graphs import RelationGraph
from shamisa_bench.model.backbones import build_encoder
from shamisa_bench.model.projector import EncoderWithProjector, Projector

if TYPE_CHECKING:  # the config type only: model/ sits below train/
    from shamisa_bench.train.config import PretrainConfig

__all__ = ["PretrainNet", "batchnorm_layers", "encoder_stages"]


def batchnorm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer inside ``module`` (itself included), in ``modules()`` order."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def encoder_stages(encoder: nn.Module) -> list[list[nn.Module]]:
    """The encoder's trunk as consecutive stages: the stem, then each block stage.

    Raises:
        ValueError: for a trunk whose stages are not known (neither a ResNet nor a timm
            EfficientNet).
    """
    trunk = encoder.trunk
    if hasattr(trunk, "conv_stem") and hasattr(trunk, "blocks"):
        return [[trunk.conv_stem, trunk.bn1], *[[block] for block in trunk.blocks]]
    if hasattr(trunk, "conv1") and hasattr(trunk, "layer1"):
        return [[trunk.conv1, trunk.bn1], [trunk.layer1], [trunk.layer2], [trunk.layer3], [trunk.layer4]]
    raise ValueError(f"cannot tell the stages of a {type(trunk).__name__} trunk")


def _after_stages(encoder: nn.Module, stages: list[list[nn.Module]]) -> list[nn.Module]:
    """The trunk's layers with weights that no stage holds (EfficientNet: ``conv_head``, ``bn2``)."""
    in_stages = {id(p) for stage in stages for m in stage for p in m.parameters()}
    return [m for m in encoder.trunk.children()
            if any(True for _ in m.parameters()) and not any(id(p) in in_stages for p in m.parameters())]


class PretrainNet(nn.Module):
    """The trainable whole: encoder + projector + relation graph (prototypes, aggregator).

    One module so that DistributedDataParallel synchronises every trainable parameter.
    """

    def __init__(self, config: PretrainConfig) -> None:
        super().__init__()
        encoder = build_encoder(config.backbone, init=config.init, seed=config.seed)
        self.model = EncoderWithProjector(encoder, Projector(
            encoder.feature_dim, out_dim=config.projector_dim, seed=config.seed, init=config.projector_init,
            gain=config.projector_gain))
        # set by the training loop: True while the projector and graph warm up (the encoder runs without gradient)
        self.encoder_fixed = False
        self.graph = RelationGraph(config.graph_config(), feature_dim=encoder.feature_dim)
        self.freeze_bn = config.freeze_bn
        stages = encoder_stages(self.model.encoder)
        if config.freeze_stages > len(stages):
            raise ValueError(f"freeze_stages={config.freeze_stages} but the {config.backbone} encoder has {len(stages)} stages")
        # a plain list, not a ModuleList: these modules are already registered in the encoder
        self.frozen: list[nn.Module] = [m for stage in stages[: config.freeze_stages] for m in stage]
        if config.train_stages is not None:
            if config.train_stages > len(stages):
                raise ValueError(f"train_stages={config.train_stages} but the {config.backbone} encoder has "
                                 f"{len(stages)} stages")
            self.frozen += [m for stage in stages[config.train_stages:] for m in stage]
            self.frozen += _after_stages(self.model.encoder, stages)
        for module in self.frozen:
            module.requires_grad_(False)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        if config.channels_last:
            self.model.encoder.to(memory_format=torch.channels_last)
        # graph_features="initial": a frozen copy of the encoder as initialised, held in a
        # plain list so that it is neither trained, nor synchronised by DDP, nor saved in the
        # state dict (a resumed run rebuilds the same seeded initialisation); forward()
        # moves it to the input's device
        self.initial_encoder: list[nn.Module] = []
        if config.graph_features == "initial":
            self.initial_encoder.append(copy.deepcopy(encoder).requires_grad_(False).eval())

    @property
    def encoder(self) -> nn.Module:
        return self.model.encoder

    def train(self, mode: bool = True) -> PretrainNet:
        """Train mode, with BatchNorm layers kept in eval mode where frozen.

        All of the encoder's when ``freeze_bn``, those of the frozen stages otherwise.
        """
        super().train(mode)
        if mode:
            for part in [self.model.encoder] if self.freeze_bn else self.frozen:
                for module in batchnorm_layers(part):
                    module.eval()
        return self

    def forward(self, x: Tensor, nodes: Any, *, with_features: bool = False) -> tuple[Any, ...]:
        """Encode the step as the reference does, then build its relation graph.

        The reference crops and the distorted crops go through the encoder as two separate
        batches, so in train mode each batch normalises with its own BatchNorm statistics
        (and the running statistics are updated twice per step, references first).

        Returns:
            ``(z, graph_out)``, and the encoder features ``h`` third with ``with_features``.
        """
        is_ref = nodes.is_ref
        fmt = self.memory_format
        encoder = self.model.encoder
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoder_fixed):
            if bool(is_ref.all()) or not bool(is_ref.any()):
                h = encoder(x.contiguous(memory_format=fmt))
            else:
                ref_idx = torch.nonzero(is_ref).flatten()
                dist_idx = torch.nonzero(~is_ref).flatten()
                h_ref = encoder(x[ref_idx].contiguous(memory_format=fmt))
                h_dist = encoder(x[dist_idx].contiguous(memory_format=fmt))
                h = torch.empty((x.shape[0], h_ref.shape[1]), dtype=h_ref.dtype, device=h_ref.device)
                h = h.index_copy(0, ref_idx, h_ref).index_copy(0, dist_idx, h_dist)
        edge_features = None
        if self.initial_encoder:
            initial = self.initial_encoder[0]
            if next(initial.parameters()).device != x.device:
                initial.to(x.device)
            with torch.no_grad():  # always in eval mode: BatchNorm uses its ImageNet statistics
                edge_features = initial(x.contiguous(memory_format=fmt))
        z, graph_out = self.model.projector(h), self.graph(h, nodes, edge_features=edge_features)
        return (z, graph_out, h) if with_features else (z, graph_out)
