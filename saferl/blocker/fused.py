"""An ensemble's member nets run as one: a review's few frames pass once through grouped convolutions and batched
matrix products instead of once through each member.

At the batch of a review (8 frames a step) a small CNN's time is mostly each layer's fixed cost, paid once per
layer per member; fused, it is paid once per layer. The weights are the members' own, laid side by side: the first
convolution stacks the members' filters (they read the same input), each later one is grouped by member, and the
fully connected layers are batched matrix products over the member axis. ``tests/test_fused.py`` checks that the
fused pass gives every member's logits and views as the member's own pass does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from saferl.blocker.model import BlockerNet


def _layers(nets: Sequence[BlockerNet], kind: type[nn.Module], part: str) -> list[list[nn.Module]]:
    """Per layer, every net's layer of ``kind`` in its ``part`` (trunk or head)."""
    per_net = [[layer for layer in getattr(net, part) if isinstance(layer, kind)] for net in nets]
    return [list(layers) for layers in zip(*per_net)]


class FusedNets:
    """The member nets of an ensemble (all of one shape) as one inference pass.

    :param nets: the members' nets; :meth:`fuse` says whether they can be fused.
    """

    def __init__(self, nets: Sequence[BlockerNet]) -> None:
        self.members = len(nets)
        self.n_actions = nets[0].n_actions
        self._nets = list(nets)
        self._params = [p for net in nets for p in net.parameters()]
        self._versions = [p._version for p in self._params]
        with torch.no_grad():
            self.convs = []
            for depth, convs in enumerate(_layers(nets, nn.Conv2d, "trunk")):
                weight = torch.cat([conv.weight for conv in convs]).contiguous(memory_format=torch.channels_last)
                self.convs.append((weight, torch.cat([conv.bias for conv in convs]), convs[0].stride,
                                   convs[0].padding, 1 if depth == 0 else self.members))
            linears = _layers(nets, nn.Linear, "head")
            first = linears[0]
            n_features = first[0].in_features - self.n_actions
            self.feature_weight = torch.stack([layer.weight[:, :n_features].T for layer in first])  # K x F x u
            self.action_weight = torch.stack([layer.weight[:, n_features:].T for layer in first])  # K x A x u
            self.feature_bias = torch.stack([layer.bias for layer in first]).unsqueeze(1)  # K x 1 x u
            self.linears = [(torch.stack([layer.weight.T for layer in layers]),
                             torch.stack([layer.bias for layer in layers]).unsqueeze(1)) for layers in linears[1:]]

    @staticmethod
    def fuse(nets: Sequence[BlockerNet]) -> FusedNets | None:
        """The nets fused, or None when they differ in shape (then each runs on its own)."""
        shapes = {tuple((name, tuple(p.shape)) for name, p in net.named_parameters()) for net in nets}
        devices = {p.device for net in nets for p in net.parameters()}
        return FusedNets(nets) if len(shapes) == 1 and len(devices) == 1 else None

    def fits(self, nets: Sequence[BlockerNet]) -> bool:
        """Whether these weights are still ``nets``' own: the same nets, no weight changed in place since (training,
        loading). Reads each weight's version counter, not the modules (that walk cost more than the pass)."""
        return (len(nets) == len(self._nets) and all(a is b for a, b in zip(nets, self._nets))
                and all(p._version == v for p, v in zip(self._params, self._versions)))

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's block logits of every action (K x B x A) and its views (K x B x units, see
        :meth:`~saferl.blocker.model.BlockerNet.features`) of inputs ``x`` (B x C x H x W, in [0, 1])."""
        elu = nn.functional.elu
        for weight, bias, stride, padding, groups in self.convs:
            x = elu(nn.functional.conv2d(x, weight, bias, stride, padding, groups=groups))
        batch = len(x)
        features = x.reshape(batch, self.members, -1).transpose(0, 1)  # K x B x F, each member's flattened maps
        views = torch.baddbmm(self.feature_bias, features, self.feature_weight)
        hidden = elu(views.unsqueeze(2) + self.action_weight.unsqueeze(1)).reshape(self.members, -1, views.shape[-1])
        for k, (weight, bias) in enumerate(self.linears):
            hidden = torch.baddbmm(bias, hidden, weight)
            if k < len(self.linears) - 1:
                hidden = elu(hidden)
        return hidden.reshape(self.members, batch, self.n_actions), views
