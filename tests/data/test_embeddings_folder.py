"""The clip-retrieval embeddings folder: parts matched by number, float16 or float32, chunks, clear refusals."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lib.data.embeddings_folder import embeddings_dim, metadata_columns, read_embeddings
from lib.errors import EmbeddingsFolderError


def write_part(folder, number, vectors, paths, **columns):
    (folder / "img_emb").mkdir(parents=True, exist_ok=True)
    (folder / "metadata").mkdir(parents=True, exist_ok=True)
    np.save(folder / "img_emb" / f"img_emb_{number}.npy", vectors)
    pq.write_table(pa.table({"image_path": paths, **columns}), folder / "metadata" / f"metadata_{number}.parquet")


def test_reads_every_part_in_number_order_in_chunks(tmp_path):
    rng = np.random.default_rng(0)
    parts = {10: rng.normal(size=(7, 8)).astype(np.float16), 2: rng.normal(size=(5, 8)).astype(np.float32)}
    for number, vectors in parts.items():
        write_part(tmp_path, number, vectors, [f"p{number}/{i}.jpg" for i in range(len(vectors))],
                   caption=[f"caption {number} {i}" for i in range(len(vectors))])
    chunks = list(read_embeddings(tmp_path, chunk_rows=3, columns=("image_path", "caption")))
    assert [len(c.vectors) for c in chunks] == [3, 2, 3, 3, 1]  # part 2 first, then part 10; chunks within a part
    paths = [p for c in chunks for p in c.paths]
    assert paths == [f"p2/{i}.jpg" for i in range(5)] + [f"p10/{i}.jpg" for i in range(7)]
    vectors = np.concatenate([c.vectors for c in chunks])
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    expected = np.concatenate([parts[2], parts[10].astype(np.float32)])
    assert np.allclose(vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-3)
    assert chunks[0].metadata.column("caption").to_pylist() == ["caption 2 0", "caption 2 1", "caption 2 2"]
    assert embeddings_dim(tmp_path) == 8 and metadata_columns(tmp_path) == ["image_path", "caption"]


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "metadata" / "metadata_1.parquet").unlink(), r"part\(s\) 1 have a vectors file"),
    (lambda f: np.save(f / "img_emb" / "img_emb_1.npy", np.zeros((3, 4), np.float32)), "has 2 rows but"),
    (lambda f: np.save(f / "img_emb" / "img_emb_1.npy", np.zeros((2, 5), np.float32)), "5-d vectors, the parts"),
    (lambda f: np.save(f / "img_emb" / "img_emb_1.npy", np.zeros((2, 4), np.int64)), "expected float16 or float32"),
    (lambda f: (f / "metadata" / "metadata_1.parquet").write_bytes(b"not parquet"), "cannot read"),
])
def test_a_damaged_folder_is_refused_with_the_reason(tmp_path, damage, message):
    write_part(tmp_path, 0, np.ones((2, 4), np.float32), ["a.jpg", "b.jpg"])
    write_part(tmp_path, 1, np.ones((2, 4), np.float32), ["c.jpg", "d.jpg"])
    damage(tmp_path)
    with pytest.raises(EmbeddingsFolderError, match=message):
        list(read_embeddings(tmp_path))


def test_not_a_folder_of_embeddings(tmp_path):
    with pytest.raises(EmbeddingsFolderError, match="needs img_emb/ and metadata/"):
        list(read_embeddings(tmp_path))
    (tmp_path / "img_emb").mkdir()
    (tmp_path / "metadata").mkdir()
    with pytest.raises(EmbeddingsFolderError, match="holds no img_emb/img_emb_N.npy"):
        list(read_embeddings(tmp_path))
