"""End to end on synthetic signs: a small CNN trained to see a Mass points inside the generator's Mass boxes.

Checks the whole chain (generator boxes -> map grid -> Grad-CAM -> pointing game), orientation included: a swap of
x and y or a flipped map would fall to the random baseline. The DenseNet-121 bundle version of this target is
``benchmarks/explain_pointing_game.py`` (minutes on 2 cores).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from common.data.chestxray14 import CHESTXRAY14_FINDINGS
from common.explain import FindingGradCAM, score_box, summarise_scores
from common.synthetic.cxr import render_chest_with_boxes

SIZE = 48


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[list[tuple[int, int, int, int]]]]:
    mass = [float(name == "Mass") for name in CHESTXRAY14_FINDINGS]
    images, labels, boxes = [], [], []
    for index in range(n):
        present = index % 2 == 0
        image, signs = render_chest_with_boxes(mass if present else [0.0] * 14, np.random.default_rng([seed, index]),
                                               SIZE)  # fmt: skip
        images.append(image.astype(np.float32) / 255.0)
        labels.append(float(present))
        boxes.append([box for _, box in signs])
    return torch.from_numpy(np.stack(images))[:, None], torch.tensor(labels)[:, None], boxes


def test_trained_cnn_points_into_mass_boxes_above_random_baseline() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1, stride=2),
                        nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                        nn.Linear(16, 1))  # fmt: skip
    x, y, _ = _data(80, seed=0)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(30):
        optimizer.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(net(x), y).backward()
        optimizer.step()
    test_x, _, test_boxes = _data(60, seed=1)
    maps = FindingGradCAM(net, layer="4")(test_x, [0])[:, 0].numpy()
    scores = [score_box(cam, "Mass", tuple(float(v) for v in box)) for cam, boxes in zip(maps, test_boxes, strict=True)
              for box in boxes]  # fmt: skip
    summary = summarise_scores(scores, n_boot=200)["findings"]["Mass"]
    assert summary["n_boxes"] >= 25
    assert summary["hit_rate"] > summary["random_baseline"] + 0.3, summary
    assert summary["hit_rate_ci95"][0] > summary["random_baseline"], summary
