"""An async job that writes ORM objects through an ``AsyncSession``: the crash tests'
subject (importable by the child processes ``crash_points(mode="kill")`` starts)."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import acidic


class Base(DeclarativeBase):
    pass


class Booking(Base):
    __tablename__ = "orm_bookings"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_key: Mapped[str] = mapped_column(sa.String(255))
    seat: Mapped[str] = mapped_column(sa.String(40))


class BookSeats(acidic.Job):
    """Books ``seats`` seats (flushed by the step) and one more (left unflushed, so
    acidic flushes it before the commit); then a foreign call; then counts them."""

    seats: int

    @acidic.step
    async def book(self, tx: AsyncSession) -> None:
        tx.add_all([Booking(run_key=self.key, seat=f"seat-{i}") for i in range(self.seats)])
        await tx.flush()  # the rows are in the transaction, not yet committed
        tx.add(Booking(run_key=self.key, seat="unflushed"))

    @acidic.step(transactional=False)
    async def notify(self) -> None:
        await asyncio.sleep(0.001)
        self.ctx["notified"] = True

    @acidic.step
    async def confirm(self, tx: AsyncSession) -> acidic.Response:
        count = await tx.scalar(
            sa.select(sa.func.count()).select_from(Booking).where(Booking.run_key == self.key)
        )
        return acidic.Response(count)


def bookings(app: acidic.App, key: str) -> list[str]:
    """The seats booked under ``key``, through the sync engine."""
    with app.engine.connect() as conn:
        return list(
            conn.scalars(sa.select(Booking.seat).where(Booking.run_key == key).order_by(Booking.id))
        )


def make_app(url: str) -> acidic.App:
    """The App of the crash tests' child processes (and of the tests)."""
    app = acidic.App(url)
    app.job(name="orm.BookSeats")(BookSeats)
    return app


def create_tables(app: acidic.App) -> None:
    Base.metadata.create_all(app.engine)
