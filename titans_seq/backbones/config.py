"""TitansConfig: every size and switch of a backbone, validated on construction."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from titans_seq.memory.module import DECAY_TARGETS

VARIANTS = ("lmm", "mac", "mag", "mal", "transformer", "swa")


@dataclass
class TitansConfig:
    variant: str = "mac"             # lmm | mac | mag | mal (Titans) or transformer | swa (baselines)
    d_model: int = 256               # width of the residual stream
    n_layers: int = 4                # number of blocks
    n_heads: int = 4                 # heads of attention and of the memory
    head_dim: int | None = None      # memory head size; None: d_model // n_heads
    mlp_hidden: int | None = None    # SwiGLU hidden size; None: 8/3 d_model rounded up to 64
    memory_depth: int = 2            # L_M: layers of the memory MLP (1 = linear memory)
    memory_expansion: int = 4        # hidden width of the memory MLP, as a multiple of head_dim
    memory_activation: str = "silu"  # activation of the memory MLP's hidden layers
    memory_lr_max: float | None = None  # theta_t = memory_lr_max * sigmoid(.); None: 1 / chunk_size (stable)
    memory_damped_momentum: bool = False  # theta_t also scaled by (1 - eta_t): steps stay <= lr_max (low-entropy inputs)
    memory_chunk_budget: float | None = None  # bound a chunk's summed steps along a key, momentum counted
    memory_decay_target: str = "zero"  # what the decay forgets toward: zero (the paper's) | init (the learnt W_0)
    memory_bound_by_input_norm: bool = False  # each memory layer's step / max(1, |its input|^2): a wide hidden
                                              # layer cannot overshoot
    memory_backend: str = "auto"     # torch | torch_recompute (less memory) | triton | auto (triton on CUDA)
    chunk_size: int = 64             # tokens per memory update chunk (gradients at chunk-start weights)
    segment_len: int = 128           # MAC: tokens per segment attended together with the memory
    mac_query_conv: bool = False     # MAC: the memory read's queries pass through the short convolution (q_t)
    window: int = 256                # sliding-window size for swa, mag and mal
    n_persistent: int = 4            # learnable persistent memory tokens (Titans variants; 0 = none)
    conv_kernel: int = 4             # width of the memory's causal depthwise convolution
    bidirectional: bool = False      # each block's mixer also reads the sequence backwards (the same weights),
                                     # the two reads averaged: not causal, for models that see whole sequences
    rope_base: float = 10000.0       # RoPE base frequency
    norm_eps: float = 1e-6           # RMSNorm epsilon

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        positive = ("d_model", "n_layers", "n_heads", "memory_depth", "memory_expansion", "chunk_size",
                    "segment_len", "window", "conv_kernel")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.n_persistent < 0:
            raise ValueError(f"n_persistent must be >= 0; got {self.n_persistent}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model={self.d_model} must split into n_heads={self.n_heads} heads of an even size")
        if self.head_dim is not None and self.head_dim < 1:
            raise ValueError(f"head_dim must be >= 1; got {self.head_dim}")
        if self.memory_chunk_budget is not None and not self.memory_chunk_budget > 0:
            raise ValueError(f"memory_chunk_budget must be > 0; got {self.memory_chunk_budget}")
        if self.memory_decay_target not in DECAY_TARGETS:
            raise ValueError(f"memory_decay_target must be one of {', '.join(DECAY_TARGETS)}; "
                             f"got {self.memory_decay_target!r}")
        if self.memory_lr_max is not None and not 0 < self.memory_lr_max <= 1:
            raise ValueError(f"memory_lr_max must be in (0, 1]; got {self.memory_lr_max}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TitansConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TitansConfig field(s) {unknown}; valid fields: {sorted(known)}")
        return cls(**values)
