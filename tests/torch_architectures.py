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
