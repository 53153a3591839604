"""Models trained on the real data: NCFM's pool, MTT's experts, CV-DD's committee (one folder skeleton, .folder),
the ensemble teacher of soft labels and relabelling. Two entry points serve the layers above: build_teacher (a
request from TEACHER_BUILDERS -> a folder) and load_teacher (a folder, file or model -> a Teacher)."""
from .builders import (TEACHER_BUILDERS, CommitteeRequest, ExpertsRequest, PoolRequest, build_teacher, make_request,
                       request_options)
from .committee import load_teacher
from .ensemble import Teacher
from .folder import KINDS, FolderKind

__all__ = ["TEACHER_BUILDERS", "CommitteeRequest", "ExpertsRequest", "PoolRequest", "build_teacher", "make_request",
           "request_options", "load_teacher", "Teacher", "KINDS", "FolderKind"]
