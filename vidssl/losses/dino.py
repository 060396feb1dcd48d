"""DINO's self-distillation loss (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
ICCV 2021, Algorithm 1; facebookresearch/dino main_dino.py `DINOLoss.forward`). The center is state of the
method (vidssl/methods/dino.py updates it), so this is a pure function."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["dino_loss"]


def dino_loss(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, student_temp: float = 0.1,
              teacher_temp: float = 0.04, teacher_crops: int = 2) -> torch.Tensor:
    """Cross-entropy H(softmax((t - center) / teacher_temp), log_softmax(s / student_temp)) over every pair of a
    teacher crop and a different student crop, averaged over samples and pairs. `student` (n_crops * N, K) and
    `teacher` (teacher_crops * N, K) hold the crops one after another (crop-major, as DINO's MultiCropWrapper);
    the teacher's crops are the student's first ones. No gradient reaches the teacher. Float32, a scalar."""
    if teacher.shape[0] % teacher_crops or student.shape[1:] != teacher.shape[1:]:
        raise ValueError(f"dino_loss: teacher {tuple(teacher.shape)} must hold {teacher_crops} crops with the "
                         f"student's {tuple(student.shape)} width")
    n = teacher.shape[0] // teacher_crops
    if student.shape[0] % n or student.shape[0] // n < teacher_crops:
        raise ValueError(f"dino_loss: student rows {student.shape[0]} are not a multiple >= {teacher_crops} of the "
                         f"{n} samples per crop")
    log_p = F.log_softmax(student.float() / student_temp, dim=-1).split(n)
    q = F.softmax((teacher.detach().float() - center.float()) / teacher_temp, dim=-1).split(n)
    terms = [-(q[i] * log_p[j]).sum(dim=-1).mean()
             for i in range(teacher_crops) for j in range(len(log_p)) if j != i]
    return torch.stack(terms).mean()
