"""line_handler.info_line: jet_sqla's own INFO lines, queued before their record exists when only a LineHandler reads them.

The record the writer thread makes later must be the one ``Logger.info(msg, extra=fields)``
would have made then: same fields, time, thread and caller. Anywhere another handler, a filter
or a record factory could see the record, ``info_line`` is ``Logger.info`` itself.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jet_sqla import line_handler, logs

from .conftest import run_in_threads

FIELDS = {'action': 'promote', 'collection': 'users', 'ids': 3, 'outcome': 'success', 'duration_ms': 1.25}


@pytest.fixture
def handler(log_file: tuple[Path, io.TextIOWrapper]) -> Iterator[logs.LineHandler]:
    handler = logs.LineHandler(log_file[1], interval=60)  # the writer thread writes nothing during a test
    handler.setFormatter(logs.JSONFormatter())
    yield handler
    handler.close()


#: What logging's records collect the caller from, by default (logging sets it the same way).
DEFAULT_SRCFILE = os.path.normcase(logging.addLevelName.__code__.co_filename)


@pytest.fixture
def record_flags() -> Iterator[None]:
    """Tests that change what records collect put it back."""
    saved = (logging._srcfile, logging.logThreads)
    yield
    logging._srcfile, logging.logThreads = saved


def logger_to(handler: logging.Handler, name: str) -> logging.Logger:
    parent = logging.getLogger(f'test_info_line.{name}')
    parent.handlers[:] = [handler]
    parent.propagate = False
    parent.setLevel(logging.INFO)
    child = logging.getLogger(f'test_info_line.{name}.child')  # the handler sits on an ancestor, as on root
    child.handlers[:] = []
    child.filters[:] = []
    return child


def queued(handler: logs.LineHandler) -> list[object]:
    """What the handler holds, as its writer will read it: each line's parts made into its ``_Line``."""
    items = list(handler._queue)
    entries: list[object] = []
    while items:
        item = items.pop(0)
        if item is line_handler._LINE:
            entries.append(line_handler._Line._make(items[:line_handler._LINE_PARTS]))
            del items[:line_handler._LINE_PARTS]
        else:
            entries.append(item)
    return entries


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding='utf-8').splitlines()]


def test_a_deferred_line_is_the_line_logger_info_writes(
        log_file: tuple[Path, io.TextIOWrapper], handler: logs.LineHandler) -> None:
    path, _ = log_file
    log = logger_to(handler, 'same')
    before = time.time()
    line_handler.info_line(log, 'action ran', dict(FIELDS))
    after = time.time()
    assert any(isinstance(entry, line_handler._Line) for entry in queued(handler))  # queued before its record
    log.info('action ran', extra=dict(FIELDS))
    handler.flush()
    deferred, direct = lines(path)
    assert {key: value for key, value in deferred.items() if key != 'time'} == \
           {key: value for key, value in direct.items() if key != 'time'}
    assert list(deferred) == list(direct)  # the same keys, in the same order
    assert deferred['pid'] == direct['pid'] and deferred['logger'] == 'test_info_line.same.child'
    # The time is the call's, not the write's: the writer thread may run up to an interval later.
    written = datetime.strptime(str(deferred['time']), '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=UTC)
    assert before - 0.001 <= written.timestamp() <= after


def test_the_record_made_later_keeps_the_calls_time_thread_and_caller(
        handler: logs.LineHandler, record_flags: None) -> None:
    logging._srcfile = DEFAULT_SRCFILE  # what records collect by default
    logging.logThreads = True
    log = logger_to(handler, 'fields')

    def call() -> None:
        line_handler.info_line(log, 'action ran', dict(FIELDS))

    caller = threading.Thread(target=call, name='the request thread')
    started = time.time()
    caller.start()
    caller.join()
    joined = time.time()
    time.sleep(0.05)
    entry = queued(handler)[-1]
    assert isinstance(entry, line_handler._Line)
    record = entry.record()  # as the writer thread makes it, later and in another thread
    assert started <= record.created <= joined
    assert 0 <= record.msecs < 1000 and abs(record.msecs - (record.created % 1) * 1000) < 1.001
    assert (record.threadName, record.thread) == ('the request thread', caller.ident)
    assert (record.pathname, record.funcName) == (__file__, 'call')
    assert record.lineno == call.__code__.co_firstlineno + 1
    assert (record.levelno, record.getMessage(), vars(record)['action'], vars(record)['ids']) == (
        logging.INFO, 'action ran', 'promote', 3)


def test_without_caller_or_thread_collection_the_record_has_neither(
        handler: logs.LineHandler, record_flags: None) -> None:
    logging._srcfile = None  # what jet-sqla serve's logs.configure() turns off
    logging.logThreads = False
    log = logger_to(handler, 'lean')
    line_handler.info_line(log, 'action ran', dict(FIELDS))
    entry = queued(handler)[-1]
    assert isinstance(entry, line_handler._Line)
    record = entry.record()
    assert (record.pathname, record.lineno, record.funcName) == ('(unknown file)', 0, '(unknown function)')
    assert (record.thread, record.threadName) == (None, None)


def test_another_handler_sees_the_record_at_once(
        handler: logs.LineHandler, caplog: pytest.LogCaptureFixture, record_flags: None) -> None:
    logging._srcfile = DEFAULT_SRCFILE  # records name their caller, as by default
    log = logger_to(handler, 'captured')
    capture = caplog.handler
    log.addHandler(capture)  # a test's capture, an application's own handler
    try:
        line_handler.info_line(log, 'action ran', dict(FIELDS))
    finally:
        log.removeHandler(capture)
    [record] = [r for r in caplog.records if r.name == log.name]
    assert (record.getMessage(), vars(record)['outcome'], record.funcName) == ('action ran', 'success',
                                                                       'test_another_handler_sees_the_record_at_once')
    assert not any(isinstance(entry, line_handler._Line) for entry in queued(handler))  # a record, made at once


class _Drop(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@pytest.mark.parametrize('where', ['logger', 'ancestor', 'handler'])
def test_a_filter_anywhere_decides_as_it_does_for_logger_info(
        log_file: tuple[Path, io.TextIOWrapper], handler: logs.LineHandler, where: str) -> None:
    """A filter on the logger or the handler drops the line; on an ancestor logger it is not consulted (logging's rule)."""
    path, _ = log_file
    log = logger_to(handler, f'filtered_{where}')
    target = {'logger': log, 'ancestor': log.parent, 'handler': handler}[where]
    drop = _Drop()
    target.addFilter(drop)  # type: ignore[union-attr]
    try:
        line_handler.info_line(log, 'by info_line', dict(FIELDS))
        log.info('by logger.info', extra=dict(FIELDS))
        handler.flush()
    finally:
        target.removeFilter(drop)  # type: ignore[union-attr]
    written = [line['msg'] for line in lines(path)]
    assert written == ([] if where != 'ancestor' else ['by info_line', 'by logger.info'])


def test_a_level_above_info_writes_nothing(log_file: tuple[Path, io.TextIOWrapper], handler: logs.LineHandler) -> None:
    path, _ = log_file
    log = logger_to(handler, 'quiet')
    handler.setLevel(logging.WARNING)
    line_handler.info_line(log, 'action ran', dict(FIELDS))
    log.parent.setLevel(logging.WARNING)  # type: ignore[union-attr]
    handler.setLevel(logging.NOTSET)
    line_handler.info_line(log, 'action ran', dict(FIELDS))
    handler.flush()
    assert path.read_text() == ''


def test_a_field_that_is_not_a_scalar_is_written_as_it_was_then(
        log_file: tuple[Path, io.TextIOWrapper], handler: logs.LineHandler) -> None:
    path, _ = log_file
    log = logger_to(handler, 'mutable')
    names = ['before']
    line_handler.info_line(log, 'action ran', {'names': names})
    names.append('after')
    handler.flush()
    assert lines(path)[0]['names'] == ['before']


def test_a_record_factory_of_the_applications_makes_every_record(
        log_file: tuple[Path, io.TextIOWrapper], handler: logs.LineHandler) -> None:
    path, _ = log_file
    log = logger_to(handler, 'factory')
    default = logging.getLogRecordFactory()

    def tagged(*args: object, **kwargs: object) -> logging.LogRecord:
        record = default(*args, **kwargs)
        record.tenant = 'acme'
        return record

    logging.setLogRecordFactory(tagged)
    try:
        line_handler.info_line(log, 'action ran', dict(FIELDS))
    finally:
        logging.setLogRecordFactory(default)
    handler.flush()
    assert lines(path)[0]['tenant'] == 'acme'


def test_a_queued_line_leaves_nothing_for_the_cyclic_collector(handler: logs.LineHandler) -> None:
    """A line waits in the queue up to an interval. Queued as an object the collector tracks, every request left
    one behind, and that is what ran the collector (and grew its older generations) under jet-sqla serve."""
    log = logger_to(handler, 'untracked')
    fields = [dict(FIELDS, ids=n) for n in range(200)]
    assert not any(gc.is_tracked(each) for each in fields)  # a dict of scalars is not tracked: nor may its line be
    line_handler.info_line(log, 'action ran', {'first': True})  # starts the writer thread, with its own objects
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects())
        for each in fields:
            line_handler.info_line(log, 'action ran', each)
        grew = len(gc.get_objects()) - before
    finally:
        gc.enable()
    assert grew < 10, f'{grew} objects for the collector to track after 200 queued lines'
    assert [entry.fields['ids'] for entry in queued(handler)[1:]] == list(range(200))  # type: ignore[attr-defined]


def test_lines_queued_from_many_threads_beside_records_stay_whole_and_in_order(
        log_file: tuple[Path, io.TextIOWrapper]) -> None:
    """A line's parts are queued in one step: a flush from another thread never splits them, nor loses any."""
    path, stream = log_file
    writer = logs.LineHandler(stream, interval=0.005)
    writer.setFormatter(logs.JSONFormatter())
    log = logger_to(writer, 'threads')
    threads, per_thread = 8, 1500

    def work(number: int) -> None:
        for i in range(per_thread):
            line_handler.info_line(log, 'line', {'worker': number, 'i': i})
            if i % 3 == 0:
                log.info('record', extra={'worker': number, 'i': i})
            if i % 500 == 0:
                log.warning('checkpoint', extra={'worker': number, 'i': i})  # flushes from this thread

    run_in_threads(work, threads)
    writer.close()
    written = lines(path)
    for number in range(threads):
        mine = [(line['msg'], line['i']) for line in written if line['worker'] == number]
        expected = []
        for i in range(per_thread):
            expected.append(('line', i))
            if i % 3 == 0:
                expected.append(('record', i))
            if i % 500 == 0:
                expected.append(('checkpoint', i))
        assert mine == expected  # every line, whole, in the order its thread logged them
    assert len(written) == threads * (per_thread + per_thread // 3 + 3)


def test_deferred_lines_keep_their_place_before_a_warning(
        log_file: tuple[Path, io.TextIOWrapper], handler: logs.LineHandler) -> None:
    path, _ = log_file
    log = logger_to(handler, 'order')
    log.info('first')
    line_handler.info_line(log, 'second', {'n': 2})
    log.warning('third')  # written at once, after everything queued before it
    assert [line['msg'] for line in lines(path)] == ['first', 'second', 'third']


def test_after_close_a_line_is_written_at_once(log_file: tuple[Path, io.TextIOWrapper],
                                               handler: logs.LineHandler) -> None:
    path, _ = log_file
    log = logger_to(handler, 'closed')
    handler.close()
    line_handler.info_line(log, 'late', {'n': 1})
    assert [line['msg'] for line in lines(path)] == ['late']


def test_under_the_servers_own_logging_config_the_line_is_deferred(tmp_path: Path) -> None:
    """What ``jet-sqla serve`` installs (logs.configure: the LineHandler on root) takes the cheap path."""
    script = (
        'import logging\n'
        'from jet_sqla import line_handler, logs\n'
        'logs.configure("json", "info")\n'
        'root_handler = logging.getLogger().handlers[0]\n'
        'root_handler.interval = 60\n'
        'line_handler.info_line(logging.getLogger("jet_sqla.actions"), "action ran", {"action": "promote"})\n'
        'queue = list(root_handler._queue)\n'
        'print(len(queue) == 1 + line_handler._LINE_PARTS and queue[0] is line_handler._LINE)\n'
    )
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == 'True'  # the line's parts, and no record
    [line] = [json.loads(text) for text in done.stderr.splitlines()]  # written at exit
    assert (line['logger'], line['msg'], line['action']) == ('jet_sqla.actions', 'action ran', 'promote')


# The writer formats a deferred line without making its record, where the formatter is one of jet_sqla's.

@pytest.mark.parametrize('formatter_class', [logs.KeyValueFormatter, logs.JSONFormatter])
@pytest.mark.parametrize('fields', [
    FIELDS,
    {'note': 'a "quoted" value with spaces', 'empty': '', 'none': None, 'yes': True, 'ratio': 0.5},
    {'level': 'replaced', 'n': 1},  # an extra named like a fixed field: the record's general path
    {'_private': 1, 'shown': 2},  # an underscore extra is never written
    {'100%': '50% done', 'rate': '%s %d %(x)s', 'n%': 1},  # a % in a name or a value is written as it is
    {},
], ids=['run', 'quoting', 'fixed-field', 'underscore', 'percent', 'no-extras'])
def test_the_line_formatted_without_a_record_is_the_records_line(
        formatter_class: type[logging.Formatter], fields: dict[str, object]) -> None:
    formatter = formatter_class()
    logs.hide(['s3cr3t-token'])
    try:
        fields = {**fields, 'echo': 'said s3cr3t-token'}  # the server's own tokens are hidden on both paths
        record = logging.getLogger('jet_sqla.actions').makeRecord(
            'jet_sqla.actions', logging.INFO, __file__, 1, 'action ran', None, None, extra=dict(fields))
        deferred = formatter.format_deferred('jet_sqla.actions', record.created, 'action ran', dict(fields),
                                             os.getpid())
        again = formatter.format_deferred('jet_sqla.actions', record.created, 'action ran', dict(fields),
                                          os.getpid())  # the kv formatter's second line comes from its template
        expected = formatter.format(record)
    finally:
        logs.hide([])
    assert 's3cr3t-token' not in expected
    if fields.keys() & {'level', '_private'}:
        assert deferred is None  # left to the record, whose format() knows these cases
    else:
        assert deferred == again == expected


def test_a_subclass_that_wraps_format_gets_a_record_after_a_template_is_made(
        log_file: tuple[Path, io.TextIOWrapper], handler: logs.LineHandler) -> None:
    """The kv formatter's template, made by a record's format(), never lets the writer bypass the subclass."""
    path, _ = log_file

    class Bracketed(logs.KeyValueFormatter):
        def format(self, record: logging.LogRecord) -> str:
            return f'[{super().format(record)}]'

    formatter = Bracketed()
    handler.setFormatter(formatter)
    log = logger_to(handler, 'wrapped')
    log.info('action ran', extra=dict(FIELDS))  # a record first: its format() makes the template
    handler.flush()
    line_handler.info_line(log, 'action ran', dict(FIELDS))  # then the same logger, message and names, queued
    handler.flush()
    written = path.read_text(encoding='utf-8').splitlines()
    assert len(written) == 2
    assert all(line.startswith('[time=') and line.endswith(']') for line in written), written


def test_the_writer_makes_no_record_for_jet_sqlas_own_formatters(
        log_file: tuple[Path, io.TextIOWrapper], handler: logs.LineHandler, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = log_file
    log = logger_to(handler, 'no_record')

    def no_record(line: object) -> logging.LogRecord:
        raise AssertionError('the writer made a record')

    monkeypatch.setattr(line_handler._Line, 'record', no_record)
    line_handler.info_line(log, 'action ran', dict(FIELDS))
    handler.flush()
    [line] = lines(path)
    assert (line['msg'], line['action'], line['duration_ms']) == ('action ran', 'promote', 1.25)


def test_a_formatter_of_its_own_gets_a_record(log_file: tuple[Path, io.TextIOWrapper],
                                              handler: logs.LineHandler) -> None:
    """A subclass that formats records its own way is never bypassed by the record-free path."""
    path, _ = log_file

    class Tagged(logs.KeyValueFormatter):
        def format(self, record: logging.LogRecord) -> str:
            return f'tagged {record.getMessage()} {record.action}'  # type: ignore[attr-defined]

    handler.setFormatter(Tagged())
    log = logger_to(handler, 'own_formatter')
    line_handler.info_line(log, 'action ran', dict(FIELDS))
    handler.flush()
    assert path.read_text(encoding='utf-8') == 'tagged action ran promote\n'


@pytest.mark.parametrize('failing', ['format_deferred', 'format'])
def test_a_queued_line_that_cannot_be_formatted_is_reported_and_the_others_are_written(
        log_file: tuple[Path, io.TextIOWrapper], handler: logs.LineHandler, monkeypatch: pytest.MonkeyPatch,
        failing: str) -> None:
    """The writer reports a line it cannot format, with the record it would have been, and writes the rest."""
    path, _ = log_file

    class Picky(logs.KeyValueFormatter):
        def format_deferred(self, name: str, created: float, msg: str, extras: dict[str, object],
                            process: int | None) -> str | None:
            if msg == 'bad' and failing == 'format_deferred':
                raise ValueError('cannot write this one')
            return None if failing == 'format' else super().format_deferred(name, created, msg, extras, process)

        def format(self, record: logging.LogRecord) -> str:
            if record.msg == 'bad':
                raise ValueError('cannot write this one')
            return super().format(record)

    reported: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, 'handleError', reported.append)
    handler.setFormatter(Picky())
    log = logger_to(handler, f'picky_{failing}')
    for message in ('first', 'bad', 'last'):
        line_handler.info_line(log, message, {'n': 1})
    assert len(queued(handler)) == 3  # queued as lines, not as records
    handler.flush()
    assert [line.split(' msg=')[1].split(' ')[0] for line in path.read_text(encoding='utf-8').splitlines()] == [
        'first', 'last']
    assert [(record.getMessage(), record.n) for record in reported] == [('bad', 1)]  # type: ignore[attr-defined]
