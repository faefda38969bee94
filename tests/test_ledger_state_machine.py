"""Any sequence of grants, holds, captures, releases, expiries and idempotent replays keeps the
books balanced.

Hypothesis drives the real billing functions against a real database (SQLite and PostgreSQL)
and, after every step, compares the database with a model kept here in exact Decimals and runs
the same `check_ledger` that `image-gateway ledger check` runs. Steps that end a hold a second
time (the bundle hands out ended requests too) must change nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule, run_state_machine_as_test
from sqlalchemy import delete, select, update

from app.billing import accounts, holds
from app.billing.amounts import charge
from app.billing.ledger_check import check_ledger
from app.billing.models import Account, LedgerEntry, UsageRecord
from app.billing.sweeper import expire_stale_holds
from app.db import Database, utcnow
from app.errors import InsufficientCredits, InvalidValue
from app.idempotency import service as idem
from app.idempotency.models import IdempotentRequest
from tests.support.holds import hold_terms

HOLD_TIMEOUT_S = 900.0
ACCOUNTS = 2


def _places(low: str, high: str) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=Decimal(low), max_value=Decimal(high), places=4, allow_nan=False, allow_infinity=False)


amounts = _places("-300", "1500").filter(lambda amount: amount != 0)
multipliers = _places("0", "3")
failures = st.sampled_from(sorted(holds.FINAL_FAILURE_STATUSES - {"expired"}))


@dataclass(frozen=True)
class Placed:
    terms: holds.HoldTerms
    top_multiplier: Decimal  # the hold covered a channel this expensive; a capture may cost less


class LedgerMachine(RuleBasedStateMachine):
    runner: ClassVar[asyncio.Runner]
    db: ClassVar[Database]
    requests = Bundle("requests")

    def __init__(self) -> None:
        super().__init__()
        self.account_ids: list[str] = self.runner.run(self._fresh_accounts())
        self.balance = dict.fromkeys(self.account_ids, Decimal(0))
        self.held = dict.fromkeys(self.account_ids, Decimal(0))
        self.open: dict[str, Placed] = {}
        self.idempotency: dict[tuple[str, str], str] = {}  # (account, key) -> fingerprint it answered

    async def _fresh_accounts(self) -> list[str]:
        async with self.db.transaction() as session:
            # Every example starts from empty books; only this test writes these tables.
            for table in (IdempotentRequest, LedgerEntry, UsageRecord, Account):
                await session.execute(delete(table))
            return [(await accounts.create_account(session, f"team-{i}")).id for i in range(ACCOUNTS)]

    @rule(account=st.integers(0, ACCOUNTS - 1), amount=amounts)
    def grant(self, account: int, amount: Decimal) -> None:
        account_id = self.account_ids[account]
        allowed = self.balance[account_id] - self.held[account_id] + amount >= 0

        async def adjust() -> None:
            async with self.db.transaction() as session:
                await accounts.adjust_credits(session, account_id, amount, note="state machine", actor="test")

        try:
            self.runner.run(adjust())
        except InvalidValue:
            assert not allowed, "an adjustment within the available credits was refused"
            return
        assert allowed, "an adjustment took available credits below zero"
        self.balance[account_id] += amount

    @rule(
        target=requests,
        account=st.integers(0, ACCOUNTS - 1),
        unit=_places("0.0001", "12"),
        model_multiplier=multipliers,
        top_multiplier=multipliers,
        images=st.integers(1, 4),
    )
    def hold(
        self, account: int, unit: Decimal, model_multiplier: Decimal, top_multiplier: Decimal, images: int
    ) -> object:
        account_id = self.account_ids[account]
        terms = hold_terms(
            account_id,
            charge(unit, model_multiplier, top_multiplier, images),
            key_id="key_machine",
            unit=unit,
            model_multiplier=model_multiplier,
            images=images,
            hold_for=timedelta(seconds=HOLD_TIMEOUT_S),
        )
        fits = self.balance[account_id] - self.held[account_id] >= terms.hold_credits

        async def place() -> None:
            async with self.db.transaction() as session:
                await holds.place_hold(session, terms)

        try:
            self.runner.run(place())
        except InsufficientCredits:
            assert not fits, "a hold within the available credits was refused"
            return multiple()
        assert fits, "a hold overdrew the account"
        self.held[account_id] += terms.hold_credits
        self.open[terms.request_id] = Placed(terms, top_multiplier)
        return terms.request_id

    @rule(request_id=requests, data=st.data())
    def capture(self, request_id: str, data: st.DataObject) -> None:
        placed = self.open.get(request_id)
        terms = placed.terms if placed else None
        delivered = data.draw(st.integers(1, terms.images_requested)) if terms else 1
        channel_multiplier = data.draw(_places("0", str(placed.top_multiplier))) if placed else Decimal(1)
        credits = (
            charge(terms.unit_credits, terms.model_multiplier, channel_multiplier, delivered) if terms else Decimal(0)
        )
        outcome = holds.Outcome(
            attempts=1,
            channels_tried=[],
            latency_ms=10,
            channel_name="local",
            provider="local",
            channel_multiplier=channel_multiplier,
            images_delivered=delivered,
            credits=credits,
        )

        async def settle() -> Decimal | None:
            async with self.db.transaction() as session:
                return await holds.capture(session, request_id, outcome)

        balance = self.runner.run(settle())
        if terms is None:
            assert balance is None, "a hold that had already ended was captured again"
            return
        del self.open[request_id]
        self.held[terms.account_id] -= terms.hold_credits
        self.balance[terms.account_id] -= credits
        assert balance == self.balance[terms.account_id]

    @rule(
        account=st.integers(0, ACCOUNTS - 1),
        key=st.sampled_from(["order-1", "order-2"]),
        body=st.sampled_from([b'{"prompt": "a"}', b'{"prompt": "b"}']),
    )
    def idempotent_request(self, account: int, key: str, body: bytes) -> None:
        """A paid request under an Idempotency-Key, orchestrated as the HTTP edge does: a replay
        of the same body charges nothing, another body is refused, a short account frees the key."""
        account_id = self.account_ids[account]
        print_ = idem.fingerprint("/v1/images/generations", body)
        price = Decimal(8)

        async def run() -> str:
            claim = await idem.begin(self.db, account_id, key, print_, run_for=timedelta(seconds=60))
            if isinstance(claim, idem.Replay):
                return "replayed"
            terms = hold_terms(
                account_id, price, key_id="key_machine", unit=price, hold_for=timedelta(seconds=HOLD_TIMEOUT_S)
            )
            try:
                async with self.db.transaction() as session:
                    await holds.place_hold(session, terms)
            except InsufficientCredits:
                await idem.abandon(self.db, claim)
                return "short"
            outcome = holds.Outcome(
                attempts=1,
                channels_tried=[],
                latency_ms=1,
                channel_multiplier=Decimal(1),
                images_delivered=1,
                credits=price,
            )
            async with self.db.transaction() as session:
                await holds.capture(session, terms.request_id, outcome)
            await idem.complete(self.db, claim, 200, {"kind": "images"})
            return "charged"

        known = self.idempotency.get((account_id, key))
        try:
            result = self.runner.run(run())
        except idem.IdempotencyKeyReused:
            assert known is not None and known != print_, "a key was refused for the body it first answered"
            return
        if result == "replayed":
            assert known == print_, "a replay answered for a key that never completed"
        elif result == "charged":
            assert known is None, "a completed key ran (and charged) a second time"
            self.idempotency[(account_id, key)] = print_
            self.balance[account_id] -= price
        else:
            assert known is None and self.balance[account_id] - self.held[account_id] < price

    @rule(request_id=requests, status=failures)
    def release(self, request_id: str, status: str) -> None:
        outcome = holds.Outcome(attempts=1, channels_tried=[], latency_ms=10, error_code=status)

        async def end() -> bool:
            async with self.db.transaction() as session:
                return await holds.release(session, request_id, status, outcome)

        self._ended(request_id, self.runner.run(end()))

    @rule(request_id=requests)
    def expire(self, request_id: str) -> None:
        """The holder crashed: its hold passes its deadline and the sweeper ends it."""

        async def sweep() -> int:
            async with self.db.transaction() as session:
                await session.execute(
                    update(UsageRecord)
                    .where(UsageRecord.id == request_id, UsageRecord.status == "pending")
                    .values(
                        created_at=utcnow() - timedelta(seconds=2 * HOLD_TIMEOUT_S),
                        hold_until=utcnow() - timedelta(seconds=1),
                    )
                )
            return await expire_stale_holds(self.db, HOLD_TIMEOUT_S)

        self._ended(request_id, self.runner.run(sweep()) == 1)

    def _ended(self, request_id: str, ended_now: bool) -> None:
        placed = self.open.pop(request_id, None)
        assert ended_now == (placed is not None), "a hold ended twice, or an open hold would not end"
        if placed is not None:
            self.held[placed.terms.account_id] -= placed.terms.hold_credits

    @invariant()
    def books_balance(self) -> None:
        async def read() -> tuple[dict[str, tuple[Decimal, Decimal]], list[tuple[str, Decimal]], list[str]]:
            async with self.db.sessions() as session:
                stored = {a.id: (a.balance, a.held) for a in (await session.scalars(select(Account))).all()}
                rows = (await session.execute(select(LedgerEntry.account_id, LedgerEntry.amount))).all()
                entries = [(owner, amount) for owner, amount in rows]
                return stored, entries, await check_ledger(session, HOLD_TIMEOUT_S)

        stored, entries, problems = self.runner.run(read())
        assert problems == []
        for account_id in self.account_ids:
            balance, held = stored[account_id]
            ledger = sum((amount for owner, amount in entries if owner == account_id), Decimal(0))
            assert balance == self.balance[account_id] == ledger
            placed = (p.terms.hold_credits for p in self.open.values() if p.terms.account_id == account_id)
            assert held == self.held[account_id] == sum(placed, Decimal(0))
            assert balance - held >= 0


def test_any_sequence_of_money_operations_keeps_the_books_balanced(database_url: str) -> None:
    with asyncio.Runner() as runner:
        db = Database(database_url)

        class OnThisDatabase(LedgerMachine):
            pass

        OnThisDatabase.runner = runner
        OnThisDatabase.db = db
        try:
            run_state_machine_as_test(
                OnThisDatabase,
                settings=settings(
                    max_examples=25,
                    stateful_step_count=30,
                    deadline=None,
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow],
                ),
            )
        finally:
            runner.run(db.dispose())
