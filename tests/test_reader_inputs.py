"""Consistent inputs and older Siemens headers (issue 12): a folder must hold one scan; non-DICOM files are
skipped with a note; a syngo VA/VB IMA keeps its points count elsewhere than DataPointColumns."""

import shutil
import struct

import numpy as np
import pydicom
import pytest

from qc_daemon.errors import InputError
from qc_daemon.sources.csa import parse_csa
from qc_daemon.sources.dicom import read_dicom
from qc_daemon.sources.open import open_recording

from .conftest import ROOT

FOLDER = ROOT / "fixtures" / "small_dicom_dicom"


def csa2(tags: dict[str, list[str]]) -> bytes:
    """A CSA2 ("SV10") header holding ``tags`` (the layout qc_daemon.sources.csa documents)."""
    out = bytearray(b"SV10\x04\x03\x02\x01" + struct.pack("<2I", len(tags), 77))
    for name, values in tags.items():
        out += name.encode()[:63].ljust(64, b"\0") + struct.pack("<i4sii", 1, b"FD\0\0", 3, len(values))
        out += struct.pack("<i", 77)
        for v in values:
            raw = v.encode() + b"\0"
            out += struct.pack("<4i", len(raw), len(raw), 77, len(raw)) + raw.ljust((len(raw) + 3) // 4 * 4, b"\0")
    return bytes(out)


def test_csa_writer_round_trips():
    tags = {"A": ["1"], "Name": ["x y"], "Empty": []}
    assert parse_csa(csa2(tags)) == tags


def ima_like_older_software(src, dst, image_tags_drop=("DataPointColumns",), protocol: str | None = None):
    """SVS_30.IMA rewritten as older syngo writes it: some image-header tags gone, the points count perhaps
    only in the ASCII protocol of the series header."""
    ds = pydicom.dcmread(str(src))
    creator = next(e for e in ds.group_dataset(0x0029) if e.tag.element <= 0xFF
                   and str(e.value).strip() == "SIEMENS CSA HEADER")
    block = creator.tag.element
    image = (0x0029, (block << 8) | 0x10)
    tags = {k: v for k, v in parse_csa(ds[image].value).items() if k not in image_tags_drop}
    ds[image].value = csa2(tags)
    series = (0x0029, (block << 8) | 0x20)
    if protocol is not None:
        line = f"sSpecPara.lVectorSize = {protocol}\n" if protocol else ""  # "" = a protocol without it
        text = f"### ASCCONV BEGIN ###\n{line}### ASCCONV END ###"
        if series in ds:
            ds[series].value = csa2({"MrProtocol": [text]})
        else:
            ds.add_new(series, "OB", csa2({"MrProtocol": [text]}))
    ds.save_as(str(dst))
    return dst


def test_an_older_ima_finds_its_points_in_the_protocol(real_dir, tmp_path):
    new = read_dicom(real_dir / "SVS_30.IMA")
    old = read_dicom(ima_like_older_software(real_dir / "SVS_30.IMA", tmp_path / "va.IMA", protocol="1024",
                                             image_tags_drop=("DataPointColumns",
                                                              "SpectroscopyAcquisitionDataColumns")))
    assert old.scan.n_points == new.scan.n_points == 1024
    assert np.array_equal(old.transients[0].data, new.transients[0].data)


def test_an_older_ima_finds_its_points_in_spectroscopy_acquisition_data_columns(real_dir, tmp_path):
    ds_path = ima_like_older_software(real_dir / "SVS_30.IMA", tmp_path / "vb.IMA", protocol="",
                                      image_tags_drop=("DataPointColumns", "SpectroscopyAcquisitionDataColumns"))
    ds = pydicom.dcmread(str(ds_path))
    ds.SpectroscopyAcquisitionDataColumns = 1024
    ds.save_as(str(ds_path))
    assert read_dicom(ds_path).scan.n_points == 1024


def test_an_ima_without_any_points_count_says_where_it_looked(real_dir, tmp_path):
    path = ima_like_older_software(real_dir / "SVS_30.IMA", tmp_path / "none.IMA", protocol="",
                                   image_tags_drop=("DataPointColumns", "SpectroscopyAcquisitionDataColumns"))
    with pytest.raises(InputError, match="no points count in the header.*lVectorSize"):
        read_dicom(path)


def test_a_folder_mixing_two_scans_is_refused_naming_the_odd_file(real_dir, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(FOLDER, folder)
    shutil.copy(real_dir / "SVS_XA60.dcm", folder / "00000_other.dcm")
    with pytest.raises(InputError) as err:
        read_dicom(folder)
    assert "00000_other.dcm" in str(err.value) and "one folder must hold one scan" in str(err.value)


def test_non_dicom_files_in_a_dicom_folder_are_skipped_with_a_note(tmp_path):
    folder = tmp_path / "with_rda"
    shutil.copytree(FOLDER, folder)
    (folder / "scan.rda").write_bytes(b">>> Begin of header <<<\r\nnot dicom\r\n")
    (folder / "README.txt").write_text("notes\n")
    rec = open_recording(folder)
    assert len(rec.transients) == len(list(FOLDER.iterdir()))
    assert any("skipped 2 file(s) that are not DICOM" in n for n in rec.notes)
