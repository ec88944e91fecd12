"""The dataset registry against real HTTP: a local server stands in for the upstream host."""
import dataclasses
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pooch
import pytest

from titans_seq.cli import main
from titans_seq.data import (CACHE_ENV, MIRROR_ENV, DataError, DataFile, Dataset, get_dataset, registry,
                             resolve_dataset, verify)

ETTH1 = get_dataset("ett/ETTh1")


class Upstream(http.server.ThreadingHTTPServer):
    """Serves a folder on 127.0.0.1, counting requests; ``stall_after`` bytes, then hangs (a dying connection)."""

    def __init__(self, folder: Path):
        self.folder, self.requests, self.stall_after = folder, [], None

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(handler, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(handler):
                self.requests.append(handler.path)
                if self.stall_after is None:
                    return super().do_GET()
                body = (folder / handler.path.lstrip("/")).read_bytes()
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body[:self.stall_after])
                handler.wfile.flush()
                time.sleep(30)

            def log_message(handler, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


@pytest.fixture
def upstream(tmp_path, shared_data):
    """A local host serving copies of real files: ETTh1.csv, and a zip holding tf_0's dev split."""
    folder = tmp_path / "upstream"
    folder.mkdir()
    shutil.copy(shared_data("timeseries", "ETTh1.csv"), folder / "ETTh1.csv")
    with zipfile.ZipFile(folder / "gue.zip", "w") as archive:
        archive.write(shared_data("dna", "gue", "tf_0", "dev.csv"), "GUE/tf_0/dev.csv")
    server = Upstream(folder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    return folder


def served(dataset: Dataset, upstream: Upstream, name: str) -> Dataset:
    """``dataset`` with its one file served by ``upstream`` as ``name``."""
    return dataclasses.replace(dataset, files=(dataclasses.replace(dataset.files[0], url=upstream.url(name)),))


def test_fetch_verifies_caches_and_reuses(upstream, cache):
    dataset = served(ETTH1, upstream, "ETTh1.csv")
    path = resolve_dataset(dataset)
    assert path == cache / "timeseries" / "ETTh1.csv"
    assert pooch.file_hash(str(path)) == ETTH1.files[0].sha256
    assert resolve_dataset(dataset) == path
    assert upstream.requests == ["/ETTh1.csv"]        # the second call reads the cache


def test_an_archive_member_lands_in_the_registry_layout(upstream, cache, shared_data):
    expected = pooch.file_hash(str(shared_data("dna", "gue", "tf_0", "dev.csv")))
    dataset = Dataset("gue/tf_0_dev", "test", "Apache-2.0", "-", "dna/gue/tf_0",
                      (DataFile("dna/gue/tf_0/dev.csv", upstream.url("gue.zip"), expected, member="GUE/tf_0/dev.csv"),))
    assert resolve_dataset(dataset) == cache / "dna" / "gue" / "tf_0"
    assert pooch.file_hash(str(cache / "dna" / "gue" / "tf_0" / "dev.csv")) == expected
    resolve_dataset(dataset)
    assert upstream.requests == ["/gue.zip"]
    wrong = dataclasses.replace(dataset, files=(dataclasses.replace(dataset.files[0], path="dna/x/dev.csv",
                                                                    sha256="0" * 64),))
    with pytest.raises(DataError, match="sha256 mismatch"):
        resolve_dataset(wrong)
    assert not (cache / "dna" / "x" / "dev.csv").exists()


def test_a_checksum_mismatch_is_one_line_and_leaves_nothing(upstream, cache):
    wrong = "0" * 64
    dataset = dataclasses.replace(ETTH1, files=(dataclasses.replace(ETTH1.files[0], url=upstream.url("ETTh1.csv"),
                                                                    sha256=wrong),))
    with pytest.raises(DataError) as error:
        resolve_dataset(dataset)
    message = str(error.value)
    assert "\n" not in message
    assert "ett/ETTh1" in message and upstream.url("ETTh1.csv") in message
    assert wrong in message and ETTH1.files[0].sha256 in message
    assert not (cache / "timeseries" / "ETTh1.csv").exists()


def test_an_unreachable_host_is_one_line_saying_where_to_put_the_file(cache):
    dataset = dataclasses.replace(ETTH1, files=(dataclasses.replace(ETTH1.files[0],
                                                                    url="http://127.0.0.1:9/ETTh1.csv"),))
    with pytest.raises(DataError) as error:
        resolve_dataset(dataset)
    message = str(error.value)
    assert "\n" not in message
    assert "http://127.0.0.1:9/ETTh1.csv" in message and str(cache / "timeseries" / "ETTh1.csv") in message
    assert MIRROR_ENV in message


def test_the_mirror_wins_over_the_network(upstream, cache, monkeypatch, shared_data):
    mirror = shared_data()
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    assert resolve_dataset(served(ETTH1, upstream, "ETTh1.csv")) == mirror / "timeseries" / "ETTh1.csv"
    assert upstream.requests == []
    assert not cache.exists()


def test_a_mirror_missing_a_file_falls_back_to_the_download(upstream, cache, monkeypatch, tmp_path):
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "empty_mirror"))
    assert resolve_dataset(served(ETTH1, upstream, "ETTh1.csv")) == cache / "timeseries" / "ETTh1.csv"
    assert upstream.requests == ["/ETTh1.csv"]


KILLED_FETCH = """
import json, sys
from titans_seq.data import DataFile, Dataset, resolve_dataset
spec = json.loads(sys.argv[1])
resolve_dataset(Dataset(**{**spec, "files": tuple(DataFile(**f) for f in spec["files"])}))
"""


def test_a_download_killed_midway_leaves_no_complete_looking_file(upstream, cache):
    dataset = served(ETTH1, upstream, "ETTh1.csv")
    upstream.stall_after = ETTH1.files[0].size // 2
    spec = json.dumps({**dataclasses.asdict(dataset), "files": [dataclasses.asdict(f) for f in dataset.files]})
    child = subprocess.Popen([sys.executable, "-c", KILLED_FETCH, spec], env={**os.environ, CACHE_ENV: str(cache)})
    deadline = time.monotonic() + 60
    while not upstream.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)                                    # half the body is written to the temporary file
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    target = cache / "timeseries" / "ETTh1.csv"
    assert upstream.requests and not target.exists()
    leftovers = [p for p in cache.rglob("*") if p.is_file()]
    assert leftovers and all(p.name.startswith("tmp") for p in leftovers)   # only pooch's temporary name
    upstream.stall_after = None
    assert resolve_dataset(dataset) == target
    assert pooch.file_hash(str(target)) == ETTH1.files[0].sha256


def test_the_registry_hashes_match_the_shared_mirror(shared_data, monkeypatch):
    mirror = shared_data()
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    found = {c.path.relative_to(mirror).as_posix(): c.status for c in verify() if c.path and mirror in c.path.parents}
    assert set(found.values()) == {"ok"}, found
    shared = {p.relative_to(mirror).as_posix() for p in mirror.rglob("*") if p.is_file()}
    assert shared - set(found) == set(UNREGISTERED)


UNREGISTERED = {"README.md": "the folder's own notes",
                "dna/fasta/ecoli_k12_mg1655_GCF_000005845.2.fna": "dna/ecoli_k12's .fna.gz, unpacked",
                "niah/PaulGrahamEssays.tar.gz": "niah/paul_graham_essays's files, repacked",
                "dna/genomic_benchmarks/human_nontata_promoters_test.csv": "a split of a registered parquet, as CSV"}


def test_every_entry_is_complete():
    for key, dataset in registry().items():
        assert dataset.description and dataset.licence and dataset.source.startswith("https://"), key
        assert dataset.files, key
        for file in dataset.files:
            assert file.url.startswith("https://"), (key, file.url)
            assert file.path == dataset.path or Path(dataset.path) in Path(file.path).parents, (key, file.path)
            assert file.sha256 is None or len(file.sha256) == 64, key


def test_the_data_command(capsys, monkeypatch, shared_data, cache):
    monkeypatch.setenv(MIRROR_ENV, str(shared_data()))
    assert main(["data", "list"]) == 0
    assert "`gue/prom_core_notata`" in capsys.readouterr().out
    assert main(["data", "path", "gue/tf_0"]) == 0
    assert capsys.readouterr().out.strip() == str(shared_data("dna", "gue", "tf_0"))
    assert main(["data", "verify", "ett/ETTh1", "gue/mouse_0"]) == 0
    assert "4 ok of 4 files" in capsys.readouterr().out
    assert main(["data", "path", "ett/ETTm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("titans-seq: error: no dataset named 'ett/ETTm'; did you mean ")
    assert "ett/ETTm1" in err[0]


def test_the_data_command_offline_is_one_line(capsys, cache, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")   # every https request fails at once, as offline
    assert main(["data", "fetch", "ett/ETTh2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ETTH1.files[0].url.replace("ETTh1", "ETTh2") in err[0]
    assert str(cache / "timeseries" / "ETTh2.csv") in err[0]


def test_a_mismatching_file_fails_verify(capsys, cache, monkeypatch, tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "timeseries").mkdir(parents=True)
    (mirror / "timeseries" / "ETTh2.csv").write_text("not the data\n")
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    assert main(["data", "verify", "ett/ETTh2"]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("mismatch") and len(err.strip().splitlines()) == 1
