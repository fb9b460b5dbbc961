"""The packaged catalogue loads; malformed catalogues fail with a message naming the entry."""
from __future__ import annotations

import copy

import pytest
import yaml

from lionfs_ros.data.synth import CatalogueError, load_catalogue
from lionfs_ros.data.synth.actions import CANDIDATES
from lionfs_ros.data.synth.catalogue import DEFAULT_CATALOGUE_PATH, parse_catalogue
from lionfs_ros.data.synth.sprites import SHAPE_PAINTERS


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(DEFAULT_CATALOGUE_PATH.read_text())


def test_packaged_catalogue_is_complete(catalogue):
    assert set(catalogue.actions) <= set(CANDIDATES)
    assert set(catalogue.shapes) <= set(SHAPE_PAINTERS)
    assert any(spec.quick for spec in catalogue.actions.values())
    assert catalogue.heldout.shape_colour and catalogue.heldout.shape_pair


def _broken(raw, edit):
    data = copy.deepcopy(raw)
    edit(data)
    return data


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("colours"), "missing 'colours'"),
    (lambda d: d["actions"]["tap"].update(duration_s=[0.4, 0.6]), "quick action 'tap'"),
    (lambda d: d["colours"].update(red=[300, 0, 0]), "colours.red"),
    (lambda d: d["shapes"]["jar"].update(labels=["PEPPER"]), "PEPPER"),
    (lambda d: d["heldout"].update(shape_colour=[["cup", "gold"]]), "heldout.shape_colour"),
    (lambda d: d["questions"]["label"].update(kind="fancy"), "questions.label.kind"),
])
def test_malformed_catalogue_names_the_problem(raw, edit, message):
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(_broken(raw, edit))


def test_unreadable_catalogue_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("colours: [unclosed")
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(path)
