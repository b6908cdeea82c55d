"""Task kinds as plugins: one `TaskKind` object per kind owns a task's features, batches, head,
loss, decoding, metrics, baseline and submission file (gau_jax/tasks/kind.py).

    classification    gau_jax/tasks/classification.py   [CLS] → Dense_K
    multiple_choice   gau_jax/tasks/multiple_choice.py  one [CLS] score per choice
    idiom_cloze       gau_jax/tasks/idiom_cloze.py      CLUE's ChID: blanks assigned jointly
    span              gau_jax/tasks/span.py             GlobalPointer over windows (CMRC2018)
    entities          gau_jax/tasks/entities.py         GlobalPointer, one type per entity type

A task (gau_jax/data/tasks.py `TaskSpec`) names its kind; `kind_of(spec)` is the object. Nothing
outside this package branches on a task's kind or name. Evaluation (decode, score, write) is
gau_jax/tasks/evaluation.py; submission files by task name gau_jax/tasks/submission.py; the loss
sums gau_jax/tasks/losses.py. Adding a kind: docs/task_kinds.md.
"""

from gau_jax.tasks import (  # noqa: F401 (register)
    classification,
    entities,
    idiom_cloze,
    multiple_choice,
    span,
)
from gau_jax.tasks.kind import (
    Decoded,
    SubmissionError,
    TaskKind,
    TaskOptions,
    available,
    get_kind,
    kind_of,
    register,
)

__all__ = ["Decoded", "SubmissionError", "TaskKind", "TaskOptions", "available", "get_kind",
           "kind_of", "register"]
