"""A user's image files decode to the picture a viewer shows, and a class folder's listing takes
every image (sub-folders included) and skips by name what is not an image to anyone. Every
expected pixel value is computed by hand in the test from the rule in detdistill/image_files.py."""

import io
import struct

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from detdistill import data, image_files
from detdistill.errors import DataError
from detdistill.image_files import check_images_decode, list_class_folder, viewer_rgb


def reopened(img: Image.Image, fmt: str = "PNG", **options) -> Image.Image:
    """`img` written in `fmt` and opened again, as the workflow meets it."""
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    buffer.seek(0)
    return Image.open(buffer)


def decoded(img: Image.Image) -> tuple[np.ndarray, list[str]]:
    notes: list[str] = []
    return np.asarray(viewer_rgb(img, notes)), notes


def grey_row(img: Image.Image) -> list[int]:
    rgb, _ = decoded(img)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[0, :, 0].tolist()


def png_bytes(width: int, colour_type: int, bit_depth: int, row: bytes) -> bytes:
    """A one-row PNG written by hand (Pillow writes no 16-bit colour PNGs)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        import zlib

        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    import zlib

    header = struct.pack(">IIBBBBB", width, 1, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" + row)) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- deep greys
@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_not_clipped(fmt):
    values = np.array([[0, 257, 9362, 32768, 65535]], np.uint16)
    img = reopened(Image.fromarray(values), fmt)
    assert img.mode == "I;16"
    # round(v * 255 / 65535): 257 -> 1, 9362 -> 36.43 -> 36, 32768 -> 127.50 -> 128
    assert grey_row(img) == [0, 1, 36, 128, 255]
    assert decoded(img)[1] == ["16-bit grey scaled from 0..65535"]
    # what decoding gave before: Pillow's convert("RGB") clips every value above 255
    assert np.asarray(img.convert("RGB"))[0, :, 0].tolist() == [0, 255, 255, 255, 255]


def test_16_bit_grey_big_endian_and_a_16_bit_pgm():
    big = Image.frombytes("I;16B", (3, 1), struct.pack(">3H", 0, 4112, 65535))
    assert grey_row(big) == [0, 16, 255]  # 4112 * 255 / 65535 = 16.0
    # a 12-bit PGM (maxval 4095): Pillow reads it as I, already stretched to 0..65535
    pgm = Image.open(io.BytesIO(b"P5 3 1 4095\n" + struct.pack(">3H", 0, 2048, 4095)))
    assert pgm.mode == "I"
    assert grey_row(pgm) == [0, 128, 255]


def test_32_bit_integer_grey_takes_the_smallest_range_that_holds_it():
    in_16 = Image.fromarray(np.array([[0, 1000, 40000, 65535]], np.int32))
    assert grey_row(reopened(in_16, "TIFF")) == [0, 4, 156, 255]  # round(v * 255 / 65535)
    assert decoded(in_16)[1] == ["32-bit integer grey scaled from 0..65535"]
    in_8 = Image.fromarray(np.array([[0, 100, 255]], np.int32))
    assert grey_row(in_8) == [0, 100, 255]
    wide = Image.fromarray(np.array([[0, 70000, 2**30, 2**31 - 1]], np.int32))
    # 2^30 * 255 / (2^31 - 1) = 127.50000006 -> 128; 70000 -> 0.0083 -> 0
    assert grey_row(wide) == [0, 0, 128, 255]
    negative = Image.fromarray(np.array([[-100, 20, 100]], np.int32))
    assert grey_row(negative) == [0, 153, 255]  # its own -100..100: (20 + 100) * 255 / 200 = 153


def test_float_grey():
    unit = Image.fromarray(np.array([[0.0, 0.25, 0.5, 1.0, np.nan]], np.float32))
    # 0.25 * 255 = 63.75 -> 64; 0.5 * 255 = 127.5 -> 128; NaN is black
    assert grey_row(reopened(unit, "TIFF")) == [0, 64, 128, 255, 0]
    assert decoded(unit)[1] == ["float grey scaled from 0..1"]
    as_16 = Image.fromarray(np.array([[0.0, 1000.0, 65535.0, np.inf]], np.float32))
    assert grey_row(as_16) == [0, 4, 255, 255]  # 1000 * 255 / 65535 = 3.89 -> 4; +inf clipped
    signed = Image.fromarray(np.array([[-1.0, 0.0, 1.0, 3.0]], np.float32))
    assert grey_row(signed) == [0, 64, 128, 255]  # its own -1..3: (v + 1) * 255 / 4
    flat = Image.fromarray(np.full((1, 3), 7.0, np.float32))
    assert grey_row(flat) == [7, 7, 7]  # inside 0..255: a constant image is not stretched


# --------------------------------------------------------------------------- colour, transparency
def test_16_bit_colour_png_keeps_pillows_high_byte():
    row = b"".join(struct.pack(">3H", v, v, v) for v in (0, 1000, 40000, 65535))
    img = Image.open(io.BytesIO(png_bytes(4, 2, 16, row)))
    assert img.mode == "RGB"
    assert decoded(img)[0][0, :, 0].tolist() == [0, 3, 156, 255]  # v >> 8


def test_transparency_is_composited_on_white():
    rgba = Image.fromarray(np.array([[[255, 0, 0, 0], [255, 0, 0, 128], [255, 0, 0, 255]]], np.uint8), "RGBA")
    rgb, notes = decoded(reopened(rgba))
    # over white: c * a/255 + 255 * (1 - a/255); a = 128 gives 127 for the zero channels (Pillow rounds down)
    assert rgb[0].tolist() == [[255, 255, 255], [255, 127, 127], [255, 0, 0]]
    assert notes == ["transparency composited on white"]
    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], np.uint8), "LA")
    assert decoded(reopened(la))[0][0].tolist() == [[255, 255, 255], [0, 0, 0]]
    row16 = b"".join(struct.pack(">2H", 0, a) for a in (0, 65535))  # 16-bit grey + alpha PNG
    assert decoded(Image.open(io.BytesIO(png_bytes(2, 4, 16, row16))))[0][0].tolist() == [[255, 255, 255], [0, 0, 0]]


def test_palette_and_colour_key_transparency():
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((1, 0), 1)
    assert decoded(reopened(palette, transparency=0))[0][0].tolist() == [[255, 255, 255], [255, 0, 0]]
    keyed = Image.new("RGB", (2, 1), (10, 20, 30))
    keyed.putpixel((1, 0), (1, 2, 3))
    assert decoded(reopened(keyed, transparency=(1, 2, 3)))[0][0].tolist() == [[10, 20, 30], [255, 255, 255]]


def test_other_modes_as_pillow_converts_them():
    bilevel = Image.new("1", (2, 1))
    bilevel.putpixel((1, 0), 1)
    assert decoded(reopened(bilevel))[0][0].tolist() == [[0, 0, 0], [255, 255, 255]]
    cmyk, notes = decoded(reopened(Image.new("CMYK", (1, 1), (0, 255, 255, 0)), "JPEG", quality=100))
    assert cmyk[0, 0].tolist() == [255, 0, 0] and notes == []
    assert decoded(Image.new("HSV", (1, 1), (85, 255, 255)))[0][0, 0].tolist() == [0, 255, 0]


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (4, 2), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 2, 2))  # left half white
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    rgb, notes = decoded(reopened(img, "PNG", exif=exif.tobytes()))
    assert rgb.shape == (4, 2, 3) and notes == ["EXIF orientation applied"]
    assert rgb[:2, :, 0].min() == 255 and rgb[2:, :, 0].max() == 0  # the left half is now on top


def icc_profile(description: str, red, green, blue) -> bytes:
    """A minimal ICC v2 RGB matrix profile (linear curves) with the given D50 colorants."""
    def xyz(values) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    desc = description.encode() + b"\0"
    tags = {
        b"desc": b"desc\0\0\0\0" + struct.pack(">I", len(desc)) + desc + b"\0" * 11 + b"\0" * 67,
        b"wtpt": xyz((0.9642, 1.0, 0.8249)),
        b"rXYZ": xyz(red), b"gXYZ": xyz(green), b"bXYZ": xyz(blue),
        **{kind: b"curv\0\0\0\0" + struct.pack(">I", 0) for kind in (b"rTRC", b"gTRC", b"bTRC")},
    }
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for kind, value in tags.items():
        value += b"\0" * (-len(value) % 4)
        table += kind + struct.pack(">II", offset + len(body), len(value))
        body += value
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ " + b"\0" * 12
              + b"acsp" + b"\0" * 28 + struct.pack(">3i", 63190, 65536, 54061) + b"\0" * 48)
    return header + struct.pack(">I", len(tags)) + table + body


# sRGB's colorants adapted to D50, as ICC profiles store them (lcms's built-in sRGB)
SRGB_RED, SRGB_GREEN, SRGB_BLUE = (0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)


def test_an_icc_profile_is_converted_to_srgb():
    # a profile whose red is sRGB's blue and blue sRGB's red: a pure red pixel is shown blue
    swapped = icc_profile("swapped primaries", SRGB_BLUE, SRGB_GREEN, SRGB_RED)
    img = reopened(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG", icc_profile=swapped)
    rgb, notes = decoded(img)
    red, green, blue = rgb[0, 0].tolist()
    assert blue >= 250 and red <= 5 and green <= 5, rgb[0, 0]
    assert notes == ["ICC profile 'swapped primaries' converted to sRGB"]
    # an sRGB profile is what a viewer assumes anyway: left as it is
    plain = reopened(Image.new("RGB", (1, 1), (200, 100, 50)), "PNG", icc_profile=icc_profile("sRGB IEC61966-2.1", SRGB_RED, SRGB_GREEN, SRGB_BLUE))
    assert decoded(plain) [0][0, 0].tolist() == [200, 100, 50] and decoded(plain)[1] == []
    broken = reopened(Image.new("RGB", (1, 1), (200, 100, 50)), "PNG", icc_profile=b"not a profile")
    assert decoded(broken)[0][0, 0].tolist() == [200, 100, 50]
    assert decoded(broken)[1] == ["unreadable ICC profile ignored"]


# --------------------------------------------------------------------------- listing
def make_class_folder(folder):
    folder.mkdir(parents=True)
    for name in ["b.png", "a.png", "batch2/c.png", "batch2/deeper/d.png"]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(folder / name)
    for name in ["._a.png", ".DS_Store", "Thumbs.db", "desktop.ini", ".hidden.png", "batch2/._c.png",
                 ".ipynb_checkpoints/a-checkpoint.png", "__MACOSX/._b.png"]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"\0\x05\x16\x07 AppleDouble-ish bytes")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_a_class_folder_takes_sub_folders_and_skips_system_files_by_name(tmp_path):
    folder = make_class_folder(tmp_path / "dog")
    listing = list_class_folder(folder)
    assert [p.relative_to(folder).as_posix() for p in listing.images] == ["a.png", "b.png", "batch2/c.png", "batch2/deeper/d.png"]
    assert listing.subfolders == {"batch2": 2}  # the class folder's own sub-folders, with all their images
    assert sorted(listing.system) == sorted(["._a.png", ".DS_Store", "Thumbs.db", "desktop.ini", ".hidden.png", "batch2/._c.png",
                                             ".ipynb_checkpoints", "__MACOSX"])
    assert listing.other == ["notes.txt"]
    lines = image_files.skipped_lines({("train", "dog"): listing}, {"train": "train"})
    assert lines[0] == ("skipped 8 system entries by name, never decoded: 2 AppleDouble ._*, 2 hidden .*, 1 .DS_Store, 1 Thumbs.db, "
                        "1 __MACOSX, 1 desktop.ini")
    assert lines[1].startswith("skipped 1 entry that is not an image file (") and lines[1].endswith("): train/dog/notes.txt")
    assert lines[2] == "took 2 images in 1 sub-folder as part of their class folder (as torchvision's ImageFolder): train/dog/batch2 (2)"


def test_a_symbolic_link_back_up_the_tree_is_followed_once(tmp_path):
    folder = tmp_path / "cat"
    folder.mkdir()
    Image.new("RGB", (4, 4)).save(folder / "a.png")
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    assert [p.name for p in list_class_folder(folder).images] == ["a.png"]


def image_tree(root, layout: dict[str, list[str]]):
    for folder, names in layout.items():
        for name in names:
            (root / folder / name).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (4, 4)).save(root / folder / name)
    return root


def test_nested_images_enter_the_manifest_with_their_path_as_id(tmp_path):
    root = image_tree(tmp_path, {"train/cat": ["1.png", "batch2/1.png"], "train/dog": ["1.png"],
                                 "test/cat": ["9.png"], "test/dog": ["9.png"]})
    (root / "train" / ".ipynb_checkpoints").mkdir()  # a hidden folder is not a class
    manifest = data.imagefolder_manifest(root, data.DEFAULT_SPLITS)
    assert manifest.image_id.tolist() == ["train/cat/1", "train/cat/batch2/1", "train/dog/1", "test/cat/9", "test/dog/9"]
    assert manifest.class_name.tolist() == ["cat", "cat", "dog", "cat", "dog"]


def test_a_name_repeated_with_another_suffix_is_refused_naming_both(tmp_path):
    root = image_tree(tmp_path, {"train/cat": ["1.png", "1.jpg"], "test/cat": ["2.png"]})
    with pytest.raises(DataError, match=r"train/cat/1\.jpg and .*train/cat/1\.png differ only in their suffix"):
        data.imagefolder_manifest(root, data.DEFAULT_SPLITS)


@pytest.mark.parametrize("only_in", ["test", "train"])
def test_a_class_folder_in_one_split_only_is_refused(tmp_path, only_in):
    other = {"test": "train", "train": "test"}[only_in]
    root = image_tree(tmp_path, {"train/cat": ["1.png"], "test/cat": ["2.png"], f"{only_in}/owl": ["3.png"]})
    with pytest.raises(DataError) as caught:
        data.imagefolder_manifest(root, data.DEFAULT_SPLITS)
    message = str(caught.value)
    assert f"['owl'] are in {root / only_in} but not in {root / other}" in message
    assert "`source.classes`" in message
    # listed classes decide: the extra folder is left out when `source.classes` does not name it
    if only_in == "test":
        assert set(data.imagefolder_manifest(root, data.DEFAULT_SPLITS, ["cat"]).class_name) == {"cat"}


# --------------------------------------------------------------------------- unreadable files
def test_every_unreadable_file_is_listed_with_its_reason(tmp_path):
    good = []
    for i in range(3):
        good.append(tmp_path / f"good{i}.png")
        Image.new("RGB", (4, 4)).save(good[-1])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    fake = tmp_path / "fake.png"
    fake.write_text("not a png")
    heic = tmp_path / "IMG_0001.HEIC"
    heic.write_bytes(b"\0\0\0\x18ftypheic")
    cut = tmp_path / "cut.jpg"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(cut, quality=90)
    cut.write_bytes(cut.read_bytes()[:300])
    deep = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 65535]], np.uint16)).save(deep)
    listing = tmp_path / "unreadable.txt"

    with pytest.raises(DataError) as caught:
        check_images_decode([*good, empty, fake, heic, cut, deep], threads=2, listing_path=listing)
    message = str(caught.value)
    assert message.startswith(f"4 of 8 image files cannot be read, all listed with the reason in {listing}: ")
    assert f"{empty} (empty file (0 bytes))" in message and "; and 1 more." in message
    table = pd.read_csv(listing, sep="\t")
    assert table.file.tolist() == [str(empty), str(fake), str(heic), str(cut)]
    reasons = dict(zip(table.file, table.reason))
    assert reasons[str(empty)] == "empty file (0 bytes)"
    assert reasons[str(fake)].startswith("UnidentifiedImageError")
    assert "convert it to JPEG or PNG" in reasons[str(heic)]
    assert reasons[str(cut)].startswith("OSError")

    assert check_images_decode([*good, deep], listing_path=listing) == {"16-bit grey scaled from 0..65535": 1}
    assert pd.read_csv(listing, sep="\t").empty
