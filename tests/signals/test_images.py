"""Images from where production keeps them: s3:// through fsspec (moto's S3 server on
127.0.0.1), https allow-list from settings, local paths refused by the worker's policy."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from otlp_spans import png_bytes

from signals.errors import ImageError
from signals.images import ImagePolicy, load_image
from telltale.settings import ImagesSettings
from telltale.wiring import image_policy

AWS = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="k", aws_secret_access_key="s")  # fmt: skip
    client.create_bucket(Bucket="gen-images")
    client.create_bucket(Bucket="private")
    client.put_object(Bucket="gen-images", Key="2026/11/a.png", Body=png_bytes((1, 2, 3), 64))
    client.put_object(Bucket="gen-images", Key="big.png", Body=png_bytes((9, 9, 9), 900))
    client.put_object(Bucket="gen-images", Key="notes.txt", Body=b"not an image")
    client.put_object(Bucket="private", Key="a.png", Body=png_bytes())
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def policy(s3: str, monkeypatch: pytest.MonkeyPatch) -> ImagePolicy:
    for key, value in AWS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TELLTALE_IMAGES_S3_ENDPOINT_URL", s3)
    monkeypatch.setenv("TELLTALE_IMAGES_BUCKETS", "gen-images")
    monkeypatch.setenv("TELLTALE_IMAGES_MAX_BYTES", "200000")
    return image_policy(ImagesSettings(), worker=True)


def test_s3_image_is_read_within_limits(policy: ImagePolicy) -> None:
    image = load_image("s3://gen-images/2026/11/a.png", policy)
    assert image.size == (64, 64) and image.getpixel((0, 0)) == (1, 2, 3)


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("s3://private/a.png", "bucket 'private' is not on the allow-list"),
        ("s3://gen-images/missing.png", "no image object"),
        ("s3://gen-images/notes.txt", "not a readable image"),
    ],
)
def test_s3_refusals_say_why(policy: ImagePolicy, ref: str, reason: str) -> None:
    with pytest.raises(ImageError, match=reason):
        load_image(ref, policy)


def test_s3_object_over_the_size_limit_is_not_downloaded(s3: str, policy: ImagePolicy) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3, region_name="us-east-1",
                          aws_access_key_id="k", aws_secret_access_key="s")  # fmt: skip
    size = client.head_object(Bucket="gen-images", Key="big.png")["ContentLength"]
    small = ImagePolicy(**{**policy.__dict__, "max_bytes": size - 1})
    with pytest.raises(ImageError, match=f"image object of {size} bytes exceeds"):
        load_image("s3://gen-images/big.png", small)


def test_worker_refuses_local_paths_and_replay_allows_them(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes())
    settings = ImagesSettings()
    with pytest.raises(ImageError, match="local image files are not allowed"):
        load_image(str(path), image_policy(settings, worker=True))
    assert load_image(str(path), image_policy(settings, worker=False)).size == (48, 48)
    opened = image_policy(ImagesSettings(worker_local_files=True), worker=True)
    assert load_image(f"file://{path}", opened).size == (48, 48)


def test_allowed_hosts_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELLTALE_IMAGES_ALLOWED_HOSTS", "cdn.example.com, *.cdn.invalid")
    policy = image_policy(ImagesSettings(), worker=True)
    assert policy.allowed_hosts == frozenset({"cdn.example.com", "*.cdn.invalid"})
    for url in ("https://evil.example.org/a.png", "https://cdn.invalid/a.png"):
        with pytest.raises(ImageError, match="not on the allow-list"):
            load_image(url, policy)
    # allowed, so it gets as far as name resolution (.invalid never resolves: RFC 2606)
    with pytest.raises(ImageError, match=r"cannot fetch image from a\.cdn\.invalid"):
        load_image("https://a.cdn.invalid/a.png", policy)


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs installed")
def test_missing_provider_package_gives_an_install_hint() -> None:
    with pytest.raises(ImageError, match=r"pip install gcsfs .*telltale\[gcs\]"):
        load_image("gs://bucket/a.png", ImagePolicy(allowed_schemes=frozenset({"gs"})))


def test_object_store_scheme_can_be_turned_off() -> None:
    policy = image_policy(ImagesSettings(object_stores=("s3",)), worker=True)
    with pytest.raises(ImageError, match="scheme 'gs' is not allowed"):
        load_image("gs://bucket/a.png", policy)
