"""dsdistill._text: counts with their noun in the right number."""
from dsdistill._text import count


def test_count_puts_the_noun_in_the_right_number():
    assert [count(n, "iteration") for n in (0, 1, 2)] == ["0 iterations", "1 iteration", "2 iterations"]
    assert count(1, "class", "classes") == "1 class" and count(3, "class", "classes") == "3 classes"
