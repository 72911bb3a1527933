"""Torch architectures written out beside their recipes, at a size each test chooses: the parity tests (KS at a
size where it has power) and the construction-order tests (small, draw for draw) build the same ones. Import only
where torch is installed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

Recipe = list[Any]


def basic_block(c_in: int, c_out: int) -> tuple[Recipe, Callable[[], nn.Module]]:
    """torchvision's ResNet BasicBlock with a downsampling shortcut, written out."""

    class BasicBlock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=2, bias=False), nn.BatchNorm2d(c_out))

    recipe: Recipe = [
        f"conv1: conv2d({c_in}, {c_out}, 3, stride=2, padding=1, bias=False)",
        f"bn1: batchnorm2d({c_out})",
        "relu: relu(inplace=True)",
        f"conv2: conv2d({c_out}, {c_out}, 3, padding=1, bias=False)",
        f"bn2: batchnorm2d({c_out})",
        {
            "type": "sequential",
            "name": "downsample",
            "layers": [f"conv2d({c_in}, {c_out}, 1, stride=2, bias=False)", f"batchnorm2d({c_out})"],
        },
    ]
    return recipe, BasicBlock


def language_model(vocab: int, width: int, hidden: int) -> tuple[Recipe, Callable[[], nn.Module]]:
    """An embedding (padding row 0), a two-layer LSTM and a linear head."""

    class LanguageModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, width, padding_idx=0)
            self.lstm = nn.LSTM(width, hidden, num_layers=2, dropout=0.1)
            self.head = nn.Linear(hidden, vocab)

    recipe: Recipe = [
        f"embed: embedding({vocab}, {width}, padding_idx=0)",
        f"lstm: lstm({width}, {hidden}, 2, dropout=0.1)",
        f"head: linear({hidden}, {vocab})",
    ]
    return recipe, LanguageModel


def issue16_layers(d: int) -> tuple[Recipe, Callable[[], nn.Module]]:
    """The layer types added for issue 16, at width `d` (a multiple of 4, >= 8): attention with kdim/vdim and
    add_bias_kv, LSTM proj_size, RMSNorm, InstanceNorm, Bilinear, EmbeddingBag, the cells, a parameterless layer,
    and empty Linears (a size 0: the weight is not drawn, the bias is, all zeros for in_features 0)."""
    recipe: Recipe = [
        f"multihead_attention({d}, 4, kdim={d // 2 + 1}, vdim={d // 4 + 3}, add_bias_kv=True)",
        f"multihead_attention({d}, 2, bias=False, add_bias_kv=True)",
        f"multihead_attention({d}, 4, vdim={d // 2})",
        f"lstm({d // 2}, {d}, 2, proj_size={d // 4}, bidirectional=True)",
        f"rmsnorm([3, {d}])",
        "dropout(0.2)",
        f"instancenorm1d({d})",
        f"instancenorm2d({d}, affine=True)",
        f"instancenorm3d({d}, affine=True, track_running_stats=True, bias=False)",
        f"bilinear({d // 4}, {d // 2}, {d})",
        f"bilinear({d // 2}, 3, {d}, bias=False)",
        f"embedding_bag({d}, {d // 2}, padding_idx=2)",
        f"embedding_bag({d // 2}, {d}, mode='sum')",
        f"rnn_cell({d // 2}, {d}, nonlinearity='relu')",
        f"lstm_cell({d}, {d // 2})",
        f"gru_cell({d // 4}, {d}, bias=False)",
        f"linear(0, {d})",
        f"linear({d}, 0)",
        "linear(0, 0, bias=False)",
    ]

    def factory() -> nn.Module:
        return nn.Sequential(
            nn.MultiheadAttention(d, 4, kdim=d // 2 + 1, vdim=d // 4 + 3, add_bias_kv=True),
            nn.MultiheadAttention(d, 2, bias=False, add_bias_kv=True),
            nn.MultiheadAttention(d, 4, vdim=d // 2),
            nn.LSTM(d // 2, d, 2, proj_size=d // 4, bidirectional=True),
            nn.RMSNorm([3, d]),
            nn.Dropout(0.2),
            nn.InstanceNorm1d(d),
            nn.InstanceNorm2d(d, affine=True),
            nn.InstanceNorm3d(d, affine=True, track_running_stats=True, bias=False),
            nn.Bilinear(d // 4, d // 2, d),
            nn.Bilinear(d // 2, 3, d, bias=False),
            nn.EmbeddingBag(d, d // 2, padding_idx=2),
            nn.EmbeddingBag(d // 2, d, mode="sum"),
            nn.RNNCell(d // 2, d, nonlinearity="relu"),
            nn.LSTMCell(d, d // 2),
            nn.GRUCell(d // 4, d, bias=False),
            nn.Linear(0, d),
            nn.Linear(d, 0),
            nn.Linear(0, 0, bias=False),
        )

    return recipe, factory
