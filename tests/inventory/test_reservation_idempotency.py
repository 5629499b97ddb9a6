"""Reserving, releasing and committing twice, one after the other or at once, counts once."""

import uuid
from uuid import UUID

import pytest

from inventory.models import Product, Reservation
from inventory.services import reservation_commit, reservation_create, reservation_release
from outbox.models import OutboxEvent
from tests.inventory.concurrency import errors, race
from tests.inventory.factories import ProductFactory


def events(order_id: UUID, type: str) -> int:
    return OutboxEvent.objects.filter(type=type, aggregate_id=str(order_id)).count()


def stock(sku: str) -> tuple[int, int]:
    product = Product.objects.get(sku=sku)
    return product.on_hand, product.reserved


@pytest.mark.django_db
class TestOneAfterTheOther:
    def test_reserving_twice_returns_the_first_reservation_and_holds_the_units_once(self):
        # given
        sku, order_id = ProductFactory(on_hand=10).sku, uuid.uuid4()
        first = reservation_create(order_id=order_id, lines={sku: 3})
        # when
        second = reservation_create(order_id=order_id, lines={sku: 3})
        # then
        assert second.pk == first.pk
        assert stock(sku) == (10, 3)
        assert events(order_id, "inventory.reserved") == 1

    def test_releasing_twice_gives_the_units_back_once(self):
        # given
        sku, order_id = ProductFactory(on_hand=10).sku, uuid.uuid4()
        other = uuid.uuid4()
        reservation_create(order_id=order_id, lines={sku: 3})
        reservation_create(order_id=other, lines={sku: 2})
        # when
        reservation_release(order_id=order_id)
        reservation_release(order_id=order_id)
        # then
        assert stock(sku) == (10, 2)
        assert events(order_id, "inventory.released") == 1

    def test_committing_twice_takes_the_units_off_the_shelf_once(self):
        # given
        sku, order_id = ProductFactory(on_hand=10).sku, uuid.uuid4()
        reservation_create(order_id=order_id, lines={sku: 3})
        # when
        reservation_commit(order_id=order_id)
        reservation_commit(order_id=order_id)
        # then
        assert stock(sku) == (7, 0)
        assert events(order_id, "inventory.committed") == 1

    def test_a_released_reservation_cannot_be_committed_nor_taken_again(self):
        # given
        sku, order_id = ProductFactory(on_hand=10).sku, uuid.uuid4()
        reservation_create(order_id=order_id, lines={sku: 3})
        reservation_release(order_id=order_id)
        # when
        committed = reservation_commit(order_id=order_id)
        again = reservation_create(order_id=order_id, lines={sku: 3})
        # then
        assert committed.status == again.status == Reservation.Status.RELEASED
        assert stock(sku) == (10, 0)
        assert events(order_id, "inventory.committed") == 0

    def test_a_committed_reservation_cannot_be_released(self):
        # given
        sku, order_id = ProductFactory(on_hand=10).sku, uuid.uuid4()
        reservation_create(order_id=order_id, lines={sku: 3})
        reservation_commit(order_id=order_id)
        # when
        released = reservation_release(order_id=order_id)
        # then
        assert released.status == Reservation.Status.COMMITTED
        assert stock(sku) == (7, 0)

    def test_releasing_or_committing_an_unknown_order_does_nothing(self):
        # given
        sku = ProductFactory(on_hand=10).sku
        # when
        released = reservation_release(order_id=uuid.uuid4())
        committed = reservation_commit(order_id=uuid.uuid4())
        # then
        assert released is None and committed is None
        assert stock(sku) == (10, 0)
        assert not OutboxEvent.objects.exists()

    @pytest.mark.parametrize("lines", [{}, {"SKU-X": 0}, {"SKU-X": -2}])
    def test_a_reservation_without_positive_quantities_is_refused(self, lines):
        # given
        ProductFactory(sku="SKU-X", on_hand=10)
        other = reservation_create(order_id=uuid.uuid4(), lines={"SKU-X": 4})
        # when
        with pytest.raises(ValueError):
            reservation_create(order_id=uuid.uuid4(), lines=lines)
        # then
        assert stock("SKU-X") == (10, 4)
        assert list(Reservation.objects.all()) == [other]


@pytest.mark.django_db(transaction=True)
class TestAtTheSameTime:
    ORDERS = 10

    @pytest.fixture(autouse=True)
    def _no_relay_wakeups(self, settings):
        settings.OUTBOX_WAKE_ON_COMMIT = False  # no worker runs here

    def twice_each(self, call, order_ids):
        """Two threads per order, all released at once."""
        return race([lambda o=o: call(order_id=o) for o in order_ids for _ in range(2)])

    def test_two_threads_reserving_for_the_same_order_make_one_reservation(self):
        # given
        sku, order_ids = ProductFactory(on_hand=100).sku, [uuid.uuid4() for _ in range(self.ORDERS)]
        # when
        outcomes = self.twice_each(
            lambda order_id: reservation_create(order_id=order_id, lines={sku: 2}), order_ids
        )
        # then
        assert errors(outcomes) == []
        assert Reservation.objects.count() == self.ORDERS
        assert stock(sku) == (100, 2 * self.ORDERS)
        assert all(events(o, "inventory.reserved") == 1 for o in order_ids)

    def test_two_threads_reserving_different_skus_for_one_order_make_one_reservation(self):
        # given: the two calls share no stock row, so only the order can serialise them
        a, b = ProductFactory(on_hand=10).sku, ProductFactory(on_hand=10).sku
        order_ids = [uuid.uuid4() for _ in range(self.ORDERS)]
        # when
        outcomes = race(
            [lambda o=o, sku=sku: reservation_create(order_id=o, lines={sku: 1})
             for o in order_ids for sku in (a, b)]
        )  # fmt: skip
        # then
        assert errors(outcomes) == []
        assert Reservation.objects.count() == self.ORDERS
        assert stock(a)[1] + stock(b)[1] == self.ORDERS
        assert all(events(o, "inventory.reserved") == 1 for o in order_ids)

    def test_two_threads_releasing_the_same_order_give_the_units_back_once(self):
        # given
        sku, order_ids = ProductFactory(on_hand=100).sku, [uuid.uuid4() for _ in range(self.ORDERS)]
        for order_id in order_ids:
            reservation_create(order_id=order_id, lines={sku: 2})
        # when
        outcomes = self.twice_each(reservation_release, order_ids)
        # then
        assert errors(outcomes) == []
        assert stock(sku) == (100, 0)
        assert all(events(o, "inventory.released") == 1 for o in order_ids)

    def test_two_threads_committing_the_same_order_ship_the_units_once(self):
        # given
        sku, order_ids = ProductFactory(on_hand=100).sku, [uuid.uuid4() for _ in range(self.ORDERS)]
        for order_id in order_ids:
            reservation_create(order_id=order_id, lines={sku: 2})
        # when
        outcomes = self.twice_each(reservation_commit, order_ids)
        # then
        assert errors(outcomes) == []
        assert stock(sku) == (100 - 2 * self.ORDERS, 0)
        assert all(events(o, "inventory.committed") == 1 for o in order_ids)

    def test_a_release_racing_a_commit_of_the_same_order_lets_exactly_one_win(self):
        # given
        sku, order_ids = ProductFactory(on_hand=100).sku, [uuid.uuid4() for _ in range(self.ORDERS)]
        for order_id in order_ids:
            reservation_create(order_id=order_id, lines={sku: 2})
        # when
        calls = [call for o in order_ids for call in (
            lambda o=o: reservation_release(order_id=o),
            lambda o=o: reservation_commit(order_id=o),
        )]  # fmt: skip
        outcomes = race(calls)
        # then
        assert errors(outcomes) == []
        committed = Reservation.objects.filter(status=Reservation.Status.COMMITTED).count()
        released = Reservation.objects.filter(status=Reservation.Status.RELEASED).count()
        assert committed + released == self.ORDERS
        assert stock(sku) == (100 - 2 * committed, 0)
        finished = OutboxEvent.objects.filter(
            type__in=["inventory.released", "inventory.committed"]
        )
        assert finished.count() == self.ORDERS
