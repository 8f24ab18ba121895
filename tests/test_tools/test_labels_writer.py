"""tools/data/labels_writer.py: checked, atomic labels files."""
import pytest

from vlltr_mm.datasets.annotation_io import read_class_names


@pytest.fixture
def writer(load_tool):
    return load_tool('tools/data/labels_writer.py')


def test_writes_replaces_and_keeps(writer, tmp_path):
    out = tmp_path / 'a' / 'labels.txt'  # the folder is created
    names = ['tench', 'great white shark', "yellow lady's slipper"]
    assert writer.write_labels(names, [str(out)], 'src') == [
        f'wrote: {out} (3 class names)']
    assert out.read_text() == "tench\ngreat white shark\n" \
        "yellow lady's slipper\n"
    assert read_class_names(str(out)) == names
    assert writer.write_labels(names, [str(out)], 'src') == [
        f'unchanged: {out} (3 class names)']
    assert writer.write_labels(names[:2], [str(out)], 'src') == [
        f'replaced: {out} (2 class names)']
    assert read_class_names(str(out)) == names[:2]


@pytest.mark.parametrize('names, match', [
    (['a', 'b', 'a'], r"src: classes 0 and 2 are both named 'a'"),
    (['a', ''], 'src: class 1 has the unusable name'),
    (['a', ' b'], "src: class 1 has the unusable name ' b'"),
    (['a\nb'], 'src: class 0 has the unusable name'),
])
def test_refuses_unusable_names(writer, tmp_path, names, match):
    out = tmp_path / 'labels.txt'
    out.write_text('old\n')
    with pytest.raises(ValueError, match=match):
        writer.write_labels(names, [str(out)], 'src')
    assert out.read_text() == 'old\n'


def test_names_the_reader_would_reinterpret(writer, tmp_path):
    """Names that all look like the authors' Places-LT layout would read
    back as other names; the old file stays and no temporary is left."""
    out = tmp_path / 'labels.txt'
    out.write_text('old\n')
    with pytest.raises(ValueError, match='read back differently'):
        writer.write_labels(['/a/airfield 0', '/b/bar 1'], [str(out)], 'src')
    assert out.read_text() == 'old\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['labels.txt']
