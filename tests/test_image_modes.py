"""Every PIL image mode a PNG/JPEG folder can hold is read as the pixels it shows (issue 25)."""

import numpy as np
import pytest
from PIL import Image

from jaxal.data import datasets

PALETTE = [(255, 0, 0), (0, 128, 255), (10, 20, 30)]
INDICES = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)


def _save(root, name, im, label="a"):
  path = root / label / name
  path.parent.mkdir(parents=True, exist_ok=True)
  im.save(path)
  return path


def _read(root, **kw):
  images, _, ids, _ = datasets.read_image_folder(root, None, **kw)
  return dict(zip((p.split("/")[-1] for p in ids), images))


def _palette_image(transparent=False):
  im = Image.fromarray(INDICES, "P")
  im.putpalette([v for rgb in PALETTE for v in rgb])
  if transparent:
    im.info["transparency"] = 1
  return im


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_png_is_its_rgb_colours(tmp_path, transparent):
  _save(tmp_path, "p.png", _palette_image(transparent))
  if transparent:
    assert "transparency" in Image.open(tmp_path / "a" / "p.png").info  # a tRNS chunk was written
  np.testing.assert_array_equal(_read(tmp_path)["p.png"], np.array(PALETTE, np.uint8)[INDICES])


def test_16_bit_png_is_scaled_not_wrapped(tmp_path):
  values = np.array([[0, 300, 32768], [40000, 65280, 65535]], np.uint16)
  _save(tmp_path, "w.png", Image.fromarray(values))
  assert Image.open(tmp_path / "a" / "w.png").mode == "I;16"
  expected = np.round(values.astype(np.int64) * 255 / 65535).astype(np.uint8)[..., None]  # [[0 1 128] [156 254 255]]
  np.testing.assert_array_equal(_read(tmp_path)["w.png"], expected)


def test_cmyk_jpeg_keeps_its_black_channel(tmp_path):
  cmyk = np.zeros((8, 8, 4), np.uint8)
  cmyk[:, :4, 3] = 200  # left half: heavy K, nothing else
  cmyk[:, 4:, 0] = 255  # right half: pure cyan
  path = _save(tmp_path, "c.jpg", Image.fromarray(cmyk, "CMYK"))
  expected = np.asarray(Image.open(path).convert("RGB"))
  got = _read(tmp_path)["c.jpg"]
  np.testing.assert_array_equal(got, expected)
  assert got[:, :4].max() < 90 and got[:, 4:, 0].max() < 40  # K darkens; cyan has no red


def test_gray_with_alpha_becomes_gray(tmp_path):
  la = np.stack([np.arange(12, dtype=np.uint8).reshape(3, 4) * 20, np.full((3, 4), 7, np.uint8)], -1)
  _save(tmp_path, "la.png", Image.fromarray(la, "LA"))
  np.testing.assert_array_equal(_read(tmp_path)["la.png"], la[..., :1])


def test_bilevel_png_is_0_or_255(tmp_path):
  bits = np.array([[0, 1, 1], [1, 0, 0]], bool)
  _save(tmp_path, "b.png", Image.fromarray(bits).convert("1"))
  np.testing.assert_array_equal(_read(tmp_path)["b.png"], bits[..., None].astype(np.uint8) * 255)


def test_folder_mixing_gray_and_colour_becomes_rgb(tmp_path):
  gray = np.arange(6, dtype=np.uint8).reshape(2, 3) * 40
  rgb = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
  _save(tmp_path / "train", "g.png", Image.fromarray(gray), "a")
  _save(tmp_path / "train", "c.png", Image.fromarray(rgb), "b")
  _save(tmp_path / "train", "p.png", _palette_image(), "b")
  images = _read(tmp_path / "train")
  np.testing.assert_array_equal(images["g.png"], np.repeat(gray[..., None], 3, -1))
  np.testing.assert_array_equal(images["c.png"], rgb)
  # A gray-only test folder beside a colour training folder: both RGB.
  _save(tmp_path / "test", "g.png", Image.fromarray(gray), "a")
  ds = datasets.load(datasets_cfg(path=str(tmp_path / "train"), test_path=str(tmp_path / "test")))
  assert ds.train.inputs.shape[1:] == ds.test.inputs.shape[1:] == (2, 3, 3)
  np.testing.assert_array_equal(ds.test.inputs[0], np.repeat(gray[..., None], 3, -1))


def test_palette_is_resized_in_rgb(tmp_path):
  _save(tmp_path, "p.png", _palette_image())
  resized = _read(tmp_path, image_size=(4, 6))["p.png"]
  expected = np.asarray(_palette_image().convert("RGB").resize((6, 4)))
  np.testing.assert_array_equal(resized, expected)


def datasets_cfg(**kw):
  from jaxal import config as config_lib
  c = config_lib.base_config().data
  c.source = "image_folder"
  for k, v in kw.items():
    c[k] = v
  return c
