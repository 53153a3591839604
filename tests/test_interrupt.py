"""dsdistill._interrupt: Ctrl-C is one line and 130, and a SIGINT delivered again afterwards is ignored."""
import signal

from dsdistill._interrupt import interrupted


def test_interrupted_is_one_line_130_and_ignores_a_second_sigint(capsys):
    old = signal.getsignal(signal.SIGINT)
    try:
        assert interrupted() == 130
        assert capsys.readouterr().err == "dsdistill: interrupted\n"
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)


def test_a_normal_exit_code_leaves_through_sys_exit():
    import pytest

    from dsdistill._interrupt import exit_process
    with pytest.raises(SystemExit) as stop:
        exit_process(2)
    assert stop.value.code == 2
