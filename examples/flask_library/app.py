"""A Flask-SQLAlchemy library app, with jet_sqla serving its actions under /api.

The models, ``db`` and the bridge are built at import time, as in any app
factory; the app itself comes from :func:`create_app`. Run it with::

    pip install "jet-sqla[flask]"
    export JET_SQLA_TOKEN=s3cret
    flask --app 'jet_sqla.examples.flask_library.app:create_app()' run
    # or, under gunicorn: jet-sqla serve 'jet_sqla.examples.flask_library.app:create_app()'

An empty library is stocked with a few authors and books (``LIBRARY_SEED=False``
in the config leaves it empty), so every action has something to run on.

Actions run inside the Flask app context, and their session *is* ``db.session``.
"""

from __future__ import annotations

import enum
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app, jsonify
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jet_sqla import ActionError, Bridge


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Genre(str, enum.Enum):
    NOVEL = 'novel'
    POETRY = 'poetry'
    ESSAY = 'essay'


class Author(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = 'authors'
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))


class Book(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = 'books'
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    genre: Mapped[Genre] = mapped_column(sa.Enum(Genre, name='book_genre'), default=Genre.NOVEL)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey('authors.id'))
    on_loan: Mapped[bool] = mapped_column(default=False)


class LoanRecord(db.Model):  # type: ignore[name-defined,misc]
    """Kept in a second database, through Flask-SQLAlchemy's binds."""

    __bind_key__ = 'archive'
    __tablename__ = 'loan_records'
    id: Mapped[int] = mapped_column(primary_key=True)
    book_id: Mapped[int]
    borrower: Mapped[str] = mapped_column(sa.String(100))
    lent_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


# Built at import time: no app, no engine yet. init_app() takes both from Flask-SQLAlchemy.
bridge = Bridge(db.Model, token=os.environ.get('JET_SQLA_TOKEN'))


@bridge.action(model=Book, for_instance=True, bulk=True)
def lend(books: list[Book], borrower: str) -> dict[str, Any]:
    """Lend the selected books; the loan is recorded in the archive database."""
    taken = [book.title for book in books if book.on_loan]
    if taken:
        raise ActionError(f'Already on loan: {", ".join(taken)}')
    for book in books:
        book.on_loan = True
        db.session.add(LoanRecord(book_id=book.id, borrower=borrower, lent_at=datetime.now(UTC)))
    return {'lent': len(books), 'library': current_app.config['LIBRARY_NAME']}


@bridge.action(model=Book, for_instance=True)
def change_genre(book: Book, genre: Genre) -> None:
    """Move a book to another shelf."""
    book.genre = genre


@bridge.action()
def add_book(title: str, author: Author, genre: Genre = Genre.NOVEL) -> dict[str, int]:
    """Add a book by an existing author."""
    if not title.strip():
        raise ActionError('A book needs a title')
    book = Book(title=title.strip(), author_id=author.id, genre=genre)
    db.session.add(book)
    db.session.flush()
    return {'id': book.id}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """The app factory: ``db`` and the bridge join the app here."""
    app = Flask(__name__)
    app.config.update(
        # In the current directory (Flask-SQLAlchemy would put relative SQLite paths in the instance folder).
        SQLALCHEMY_DATABASE_URI=os.environ.get('LIBRARY_DATABASE_URL', f'sqlite:///{Path.cwd() / "library.db"}'),
        SQLALCHEMY_BINDS={'archive': os.environ.get('LIBRARY_ARCHIVE_URL',
                                                    f'sqlite:///{Path.cwd() / "library-archive.db"}')},
        LIBRARY_NAME='City library',
        LIBRARY_SEED=True,
    )
    app.config.update(config or {})
    db.init_app(app)
    bridge.init_app(app)  # jet_sqla under /api, next to the app's own routes

    @app.get('/books')
    def books() -> Any:
        return jsonify([{'id': book.id, 'title': book.title} for book in db.session.scalars(sa.select(Book))])

    with app.app_context():
        db.create_all()
        if app.config['LIBRARY_SEED']:
            seed()
    return app


def seed() -> None:
    """Stock an empty library, so that a first run has books to lend and authors to pick."""
    if db.session.scalar(sa.select(Author.id).limit(1)) is not None:
        return
    woolf, borges, calvino = Author(name='Virginia Woolf'), Author(name='Jorge Luis Borges'), Author(name='Italo Calvino')
    db.session.add_all([woolf, borges, calvino])
    db.session.flush()
    db.session.add_all([
        Book(title='Orlando', author_id=woolf.id),
        Book(title="A Room of One's Own", author_id=woolf.id, genre=Genre.ESSAY),
        Book(title='Ficciones', author_id=borges.id),
        Book(title='Invisible Cities', author_id=calvino.id),
    ])
    db.session.commit()
