import pytest
import torch

from conrft_core.learning.backbone import BackboneConfig, OctoStyleBackbone, tokenize


def obs(b, cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = {c: torch.randint(0, 256, (b, cfg.history, cfg.image_size, cfg.image_size, 3), generator=g,
                               dtype=torch.uint8) for c in cfg.cameras}
    return images, torch.randn(b, cfg.history, 19, generator=g)


def test_tokenizer_is_deterministic_and_padded():
    ids = tokenize(["Pick up the red cube", "open the drawer"], vocab_size=100, max_words=6)
    assert ids.shape == (2, 6)
    assert ids[0, 5] == 0 and ids[1, 3] == 0 and torch.all(ids[0, :5] > 0)
    assert ids[0, 2] == ids[1, 1]  # "the" hashes to the same id everywhere
    torch.testing.assert_close(ids, tokenize(["pick UP the red cube!", "open the drawer"], 100, 6))


def test_embedding_shape_and_dependence_on_every_input():
    torch.manual_seed(0)
    cfg = BackboneConfig(image_size=32, patch_grid=4, d_model=32, num_layers=1, num_heads=2)
    net = OctoStyleBackbone(cfg).eval()
    images, proprio = obs(3, cfg)
    base = net(images, proprio, ["pick up the red cube"] * 3)
    assert base.shape == (3, 32)
    changed_img = {**images, "wrist": images["wrist"].flip(2)}
    for variant in (net(changed_img, proprio, ["pick up the red cube"] * 3),
                    net(images, proprio + 1.0, ["pick up the red cube"] * 3),
                    net(images, proprio, ["open the drawer"] * 3)):
        assert (variant - base).abs().max() > 1e-4
    # Padding words do not change the result: batch rows are independent of each other's instruction length.
    mixed = net(images, proprio, ["pick up the red cube", "open the drawer", "pick up the red cube"])
    torch.testing.assert_close(mixed[0], base[0], rtol=1e-4, atol=1e-5)


def test_window_length_checked():
    cfg = BackboneConfig(image_size=32, patch_grid=4, d_model=32, num_layers=1, num_heads=2)
    images, proprio = obs(1, cfg)
    with pytest.raises(ValueError, match="backbone.history"):
        OctoStyleBackbone(cfg)(images, proprio[:, :1], ["x"])
    with pytest.raises(ValueError, match="multiple of backbone.patch_grid"):
        BackboneConfig(image_size=30, patch_grid=4)
