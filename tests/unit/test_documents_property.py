"""Property: malformed image documents and digests get an ImageError, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocipy.errors import ImageError, OcipyError
from ocipy.spec import digest
from ocipy.spec import image as spec_image

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
keys = st.sampled_from(["mediaType", "schemaVersion", "config", "layers", "manifests", "digest", "size",
                        "annotations", "platform", "os", "architecture", "rootfs", "diff_ids", "history",
                        "subject", "artifactType", "data", "urls", "imageLayoutVersion", "type"])  # fmt: skip
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6),
                         max_leaves=25)  # fmt: skip


@pytest.mark.parametrize("validator", [spec_image.validate_manifest, spec_image.validate_index, spec_image.validate_config,
                                       spec_image.validate_descriptor, spec_image.validate_layout_file])  # fmt: skip
@given(doc=documents)
@settings(max_examples=200, deadline=None)
def test_validators_raise_only_image_errors(validator, doc):
    try:
        validator(doc)
    except OcipyError:
        pass


@given(st.text(max_size=80) | st.integers() | st.none())
@settings(max_examples=300, deadline=None)
def test_digest_parsing_raises_only_image_errors(text):
    try:
        digest.parse(text)
    except OcipyError:
        pass


def test_a_good_digest_round_trips():
    d = digest.of_bytes(b"hello")
    assert digest.parse(d) == ("sha256", d.split(":", 1)[1])
    digest.verify_bytes(b"hello", d, 5)
    with pytest.raises(ImageError):
        digest.verify_bytes(b"hellO", d, 5)


@given(st.text(max_size=60) | st.sampled_from(["docker://", "oci:", "oci-archive:", "docker-archive:", "docker://a/b:c@sha256:",
                                               "docker://[::1]:5000/x", "oci:/tmp:tag:extra", "docker://UPPER/x"]))  # fmt: skip
@settings(max_examples=300, deadline=None)
def test_reference_parsers_raise_only_ocipy_errors(text):
    from ocipy.content.reference import parse, parse_docker_reference

    for parser in (parse, parse_docker_reference):
        try:
            parser(text)
        except OcipyError:
            pass


@given(st.text(max_size=120))
@settings(max_examples=300, deadline=None)
def test_www_authenticate_parser_never_crashes(header):
    from ocipy.registry.auth import parse_www_authenticate

    try:
        parse_www_authenticate(header)
    except OcipyError:
        pass
