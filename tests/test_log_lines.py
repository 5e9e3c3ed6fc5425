"""logs.LineHandler: whole lines, in order, INFO in batches, WARNING at once, nothing lost at exit."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from jet_sqla import logs

from .conftest import run_in_threads


def logger_to(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(f'test_log_lines.{name}')
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def json_handler(stream: io.TextIOWrapper, interval: float) -> logs.LineHandler:
    handler = logs.LineHandler(stream, interval=interval)
    handler.setFormatter(logs.JSONFormatter())
    return handler


def messages(path: Path) -> list[str]:
    return [json.loads(line)['msg'] for line in path.read_text(encoding='utf-8').splitlines()]


def test_configured_logging_uses_it_batched_unless_told_not_to() -> None:
    handler = logs.logging_config('kv')['handlers']['stderr']
    assert handler['class'] == 'jet_sqla.logs.LineHandler' and handler['interval'] > 0
    assert logs.logging_config('kv', batched=False)['handlers']['stderr']['interval'] == 0


def test_interval_zero_writes_each_line_at_once(log_file: tuple[Path, io.TextIOWrapper]) -> None:
    """What ``jet-sqla worker`` uses: Celery's pool processes end without the exit handlers that flush."""
    path, stream = log_file
    handler = json_handler(stream, interval=0)
    log = logger_to(handler, 'at_once')
    log.info('first')
    assert messages(path) == ['first']
    log.debug('second', extra={'n': 2})
    assert messages(path) == ['first', 'second']
    handler.close()


def test_info_waits_for_the_writer_and_a_warning_writes_everything_before_it_at_once(
        log_file: tuple[Path, io.TextIOWrapper]) -> None:
    path, stream = log_file
    handler = json_handler(stream, interval=60)  # the writer thread will not write during this test
    log = logger_to(handler, 'order')
    try:
        log.info('first')
        log.debug('second', extra={'n': 2})
        assert path.read_text() == ''  # queued, not written
        log.warning('third')
        assert messages(path) == ['first', 'second', 'third']
        log.info('fourth')
        log.error('fifth')
        assert messages(path) == ['first', 'second', 'third', 'fourth', 'fifth']
    finally:
        handler.close()


def test_the_writer_thread_writes_info_lines_within_its_interval(log_file: tuple[Path, io.TextIOWrapper]) -> None:
    path, stream = log_file
    handler = json_handler(stream, interval=0.05)
    log = logger_to(handler, 'interval')
    try:
        log.info('soon')
        deadline = time.monotonic() + 10
        while not path.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert messages(path) == ['soon']
    finally:
        handler.close()


def test_many_threads_write_whole_lines_and_lose_none(log_file: tuple[Path, io.TextIOWrapper]) -> None:
    path, stream = log_file
    handler = json_handler(stream, interval=0.01)
    log = logger_to(handler, 'threads')
    threads, per_thread = 8, 1500

    def work(number: int) -> None:
        for i in range(per_thread):
            log.info('line', extra={'worker': number, 'i': i, 'padding': 'x' * (i % 300)})
            if i % 500 == 0:
                log.warning('checkpoint', extra={'worker': number, 'i': i})

    run_in_threads(work, threads)
    handler.close()
    records = [json.loads(line) for line in path.read_text(encoding='utf-8').splitlines()]  # each line whole JSON
    for number in range(threads):
        mine = [r['i'] for r in records if r['worker'] == number and r['msg'] == 'line']
        assert mine == list(range(per_thread))  # every line, in the order its thread logged them
    assert len(records) == threads * (per_thread + 3)


def test_a_message_with_arguments_says_what_was_true_when_it_was_logged(
        log_file: tuple[Path, io.TextIOWrapper]) -> None:
    path, stream = log_file
    handler = json_handler(stream, interval=60)
    log = logger_to(handler, 'arguments')
    state = ['before']
    log.info('state %s', state)
    state[0] = 'after'
    handler.flush()
    handler.close()
    assert messages(path) == ["state ['before']"]


def test_a_stream_without_a_descriptor_is_written_at_once() -> None:
    stream = io.StringIO()
    handler = logs.LineHandler(stream, interval=60)
    handler.setFormatter(logs.KeyValueFormatter())
    log = logger_to(handler, 'stringio')
    log.info('at once', extra={'k': 'v'})
    assert 'msg="at once" k=v' in stream.getvalue()
    handler.close()


def run_python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
                          env={**os.environ, 'PYTHONPATH': str(Path(__file__).resolve().parents[1])})


def test_queued_lines_are_written_when_the_process_exits(tmp_path: Path) -> None:
    done = run_python(
        'import logging\n'
        'from jet_sqla import logs\n'
        'logs.configure("json", "info")\n'
        'for i in range(500):\n'
        '    logging.getLogger("app").info("line", extra={"i": i})\n',
        tmp_path)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)['i'] for line in done.stderr.splitlines()] == list(range(500))


def test_a_forked_child_does_not_write_its_parents_queued_lines(tmp_path: Path) -> None:
    done = run_python(
        'import logging, os\n'
        'from jet_sqla import logs\n'
        'logs.configure("json", "info")\n'
        'handler = logging.getLogger().handlers[0]\n'
        'handler.interval = 60\n'
        'logging.getLogger("app").info("parent before fork")\n'
        'for says in ("child", None):\n'
        '    pid = os.fork()\n'
        '    if pid == 0:\n'
        '        if says:\n'
        '            logging.getLogger("app").info(says)\n'
        '        logging.shutdown()  # what exiting does: flush, close\n'
        '        os._exit(0)\n'
        '    os.waitpid(pid, 0)\n'
        'logging.getLogger("app").info("parent after fork")\n',
        tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line)['msg'] for line in done.stderr.splitlines()]
    assert sorted(lines) == ['child', 'parent after fork', 'parent before fork']


def test_a_formatter_that_logs_a_warning_does_not_deadlock_the_writer(
        log_file: tuple[Path, io.TextIOWrapper]) -> None:
    path, stream = log_file
    handler = logs.LineHandler(stream, interval=60)
    log = logger_to(handler, 'reentrant')

    class Noisy:
        """A value whose text logs a warning, as user code in an ``extra=`` may."""

        def __str__(self) -> str:
            log.warning('said while formatting')
            return 'noisy'

    handler.setFormatter(logs.KeyValueFormatter())
    log.info('queued', extra={'value': Noisy()})  # formatted later, by flush(), under the write lock
    flushing = threading.Thread(target=handler.flush)
    flushing.start()
    flushing.join(10)
    assert not flushing.is_alive(), 'flush() deadlocked on its own lock'
    handler.close()
    text = path.read_text(encoding='utf-8')
    assert 'msg="said while formatting"' in text and 'msg=queued value=noisy' in text


def test_a_full_non_blocking_pipe_is_waited_for_not_dropped(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    writer = os.fdopen(write_end, 'w')
    handler = json_handler(writer, interval=60)
    log = logger_to(handler, 'pipe')
    received = bytearray()

    def read_slowly() -> None:
        time.sleep(0.2)  # the pipe (64 KiB) fills up first
        while chunk := os.read(read_end, 65536):
            received.extend(chunk)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    for i in range(2000):
        log.info('line', extra={'i': i, 'padding': 'x' * 100})
    handler.close()  # about 300 KiB, written through a pipe that is full most of the time
    writer.close()
    reader.join(10)
    os.close(read_end)
    assert [json.loads(line)['i'] for line in received.decode().splitlines()] == list(range(2000))


def test_a_mutable_extra_or_message_object_says_what_was_true_when_it_was_logged(
        log_file: tuple[Path, io.TextIOWrapper]) -> None:
    path, stream = log_file
    handler = json_handler(stream, interval=60)
    log = logger_to(handler, 'mutable')
    seen = ['before']
    message = ['a message object']
    log.info('with a list', extra={'seen': seen})
    log.info(message)
    seen[0] = message[0] = 'after'
    handler.close()
    records = [json.loads(line) for line in path.read_text(encoding='utf-8').splitlines()]
    assert [record['msg'] for record in records] == ['with a list', "['a message object']"]
    assert records[0]['seen'] == ['before']


def test_a_record_after_close_is_still_written(log_file: tuple[Path, io.TextIOWrapper]) -> None:
    path, stream = log_file
    handler = json_handler(stream, interval=60)
    log = logger_to(handler, 'late')
    log.info('before')
    handler.close()  # what logging.shutdown does at exit
    log.info('late, during interpreter teardown')
    assert messages(path) == ['before', 'late, during interpreter teardown']
