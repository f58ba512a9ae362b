"""Realistic Magento 2 orders, from a seeded random source, in the shape of ``GET /V1/orders/{id}``.

:class:`OrderGenerator` builds a freshly placed order (state ``new``, status ``pending``) as the
REST API returns it: top-level scalars, ``items`` (a configurable product is a parent row with the
price and a child row with ``parent_item_id``, ``row_total`` 0 and a copy of the parent in
``parent_item``), ``billing_address``, ``payment``, ``status_histories`` and
``extension_attributes`` with the shipping address and a copy of the items in
``shipping_assignments[0]``, plus the applied taxes.

What varies: registered customers (from a fixed pool, with ``customer_id`` and address ids) and
guests (no ``customer_id``/names on the order: the names are only on the addresses), several
store views with their own currencies and rates, cart rules (item ``discount_amount`` positive,
order ``discount_amount`` negative), tax after discount, three shipping methods, offline payment
methods, non-ASCII names and addresses, apostrophes and quotes in names and e-mail addresses,
long product names and customer notes. Amounts are computed in decimals and add up exactly in
both the base and the order currency.

The same seed and the same sequence of calls give the same orders. Callers may pin fields
(``overrides``); pinned values are kept exactly and the rest is filled around them consistently
(see :meth:`OrderGenerator.new_order`).
"""

import json
import random
from decimal import Decimal
from functools import cache
from importlib import resources

from magsync.sandbox.magento.amounts import ZERO, dec, money, split, wire

KINDS = ("registered", "guest", "configurable")
"""What :meth:`OrderGenerator.new_order` can be asked for: a registered customer's order, a
guest's order, or an order with at least one configurable product. Unpinned aspects stay random."""

HUNDRED = Decimal("100")

# Addresses carry these keys in Magento's alphabetical output order; region keys depend on the
# country (id-based regions, free-text regions, or none at all).
_REGION_KEYS = ("region", "region_code", "region_id")


@cache
def load(name):
    """One of the package's data files (stores, places, people, catalog) as parsed JSON."""
    text = resources.files(__package__).joinpath("data", name).read_text("utf-8")
    return json.loads(text)


class Sequences:
    """The store's auto-increment columns: one counter per id kind, increment ids per store.

    Not thread-safe by itself: the order book calls it under its lock.
    """

    def __init__(self):
        self._next = {}
        self._increments = {}

    def next(self, kind):
        value = self._next.get(kind, 1)
        self._next[kind] = value + 1
        return value

    def increment_id(self, store_id):
        """Next order number of a store view: ``000000001`` for store 1, ``200000001`` for 2."""
        value = self._increments.get(store_id, 1)
        self._increments[store_id] = value + 1
        prefix = "" if store_id == 1 else str(store_id)
        return f"{prefix}{value:09d}"


def clone(document):
    """A deep copy of JSON data (a JSON round trip: exact for JSON types, and fast)."""
    return json.loads(json.dumps(document))


def sync_copies(order):
    """Refresh the denormalised copies after ``order["items"]`` changed.

    A child row's ``parent_item`` and ``shipping_assignments[0].items`` repeat the item rows in
    Magento's output; they must always agree with ``items``.
    """
    rows = {row["item_id"]: row for row in order["items"]}
    for row in order["items"]:
        if "parent_item_id" in row:
            parent = rows[row["parent_item_id"]]
            row["parent_item"] = clone(parent)
    for assignment in order["extension_attributes"].get("shipping_assignments", []):
        assignment["items"] = clone(order["items"])


class OrderGenerator:
    """Builds new orders; one instance per store, seeded once.

    ``customers`` is the size of the registered-customer pool (ids 1..N).
    """

    def __init__(self, seed=1, customers=250):
        # Reproducible sample data, not secrets: a seeded PRNG is the point.
        self.rng = random.Random(seed)  # noqa: S311
        stores = load("stores.json")
        self.settings = stores
        self.stores = {store["store_id"]: store for store in stores["stores"]}
        self.places = load("places.json")
        self.people = load("people.json")
        self.catalog = load("catalog.json")
        self._customer_address_ids = iter(range(1, 10**9))
        self.customers = [self._new_customer(i) for i in range(1, customers + 1)]

    # -- people and places -------------------------------------------------------------------

    def _choose_weighted(self, weights):
        keys = list(weights)
        return self.rng.choices(keys, weights=[weights[k] for k in keys])[0]

    def _pick_store_id(self):
        return self._choose_weighted(
            {store_id: store["weight"] for store_id, store in self.stores.items()}
        )

    def _digits(self, pattern):
        return "".join(str(self.rng.randrange(10)) if c == "#" else c for c in pattern)

    def _address(self, country):
        """A postal address in ``country`` (no names, no ids) in Magento's field names."""
        place = self.places[country]
        rng = self.rng
        region = rng.choice(place["regions"])
        city, postcode = rng.choice(region["cities"])
        fill = {"n": rng.randrange(1, 240), "m": rng.randrange(1, 30)}
        street = [rng.choice(place["streets"]).format(**fill)]
        if rng.random() < 0.25:
            street.append(rng.choice(place["street2"]).format(**fill))
        address = {
            "city": city,
            "country_id": country,
            "postcode": postcode,
            "street": street,
            "telephone": self._digits(rng.choice(place["phones"])),
        }
        if place["region_mode"] == "id":
            address.update(
                region=region["name"], region_code=region["code"], region_id=region["id"]
            )
        elif place["region_mode"] == "text":
            address["region"] = region["name"]
        return address

    def _tax_rate(self, address):
        """(percent, code) of the tax rule for a shipping address."""
        place = self.places[address["country_id"]]
        percent = place.get("tax")
        if percent is None:
            region = next(
                (r for r in place["regions"] if r.get("code") == address.get("region_code")), None
            )
            percent = region["tax"] if region else "0"
        code = f"{address['country_id']}-{address.get('region_code', '*')}-*-{place['tax_label']}"
        return dec(percent), code

    def _name(self, country):
        names = self.people["names"][country]
        return self.rng.choice(names["first"]), self.rng.choice(names["last"])

    def _email(self, first_ascii, last_ascii):
        rng = self.rng
        domain = rng.choice(self.people["domains"])
        roll = rng.random()
        if roll < 0.03:
            # A quoted local part is valid (RFC 5321) and breaks naive parsers.
            return f'"{first_ascii} {last_ascii}"@{domain}'
        if roll < 0.15:
            return f"{first_ascii}_{last_ascii}+shop@{domain}"
        if roll < 0.35:
            return f"{first_ascii[0]}{last_ascii}@{domain}"
        return f"{first_ascii}.{last_ascii}@{domain}"

    def _person(self, store_id):
        store = self.stores[store_id]
        country = self._choose_weighted(store["countries"])
        (first, first_ascii), (last, last_ascii) = self._name(country)
        return {
            "firstname": first,
            "lastname": last,
            "email": self._email(first_ascii, last_ascii),
            "address": self._address(country),
        }

    def _new_customer(self, customer_id):
        store_id = self._pick_store_id()
        person = self._person(store_id)
        rng = self.rng
        person.update(
            customer_id=customer_id,
            store_id=store_id,
            customer_address_id=next(self._customer_address_ids),
            group_id=rng.choices([1, 2, 3], weights=[8, 1, 1])[0],
        )
        if rng.random() < 0.7:
            year, month, day = rng.randrange(1940, 2006), rng.randrange(1, 13), rng.randrange(1, 29)
            person["dob"] = f"{year:04d}-{month:02d}-{day:02d} 00:00:00"
        if rng.random() < 0.8:
            person["gender"] = rng.choice([1, 2, 3])
        return person

    def _customer_for(self, pins, store_id):
        """The registered customer with the pinned e-mail, enrolled on first use.

        Orders pinned to one e-mail then share one ``customer_id``, as one account would.
        """
        email = pins["customer_email"]
        for customer in self.customers:
            if customer["email"] == email:
                return customer
        customer = self._new_customer(len(self.customers) + 1)
        customer.update(email=email, store_id=store_id)
        for key in ("firstname", "lastname"):
            if f"customer_{key}" in pins:
                customer[key] = pins[f"customer_{key}"]
        self.customers.append(customer)
        return customer

    # -- catalog -----------------------------------------------------------------------------

    def _lines(self, base_currency, configurable_wanted):
        """Random cart lines: (product, variant or None, qty) with base-currency unit prices."""
        rng = self.rng
        count = rng.choices([1, 2, 3, 4], weights=[35, 35, 20, 10])[0]
        simples = rng.sample(self.catalog["simple"], k=count)
        configurables = list(self.catalog["configurable"])
        rng.shuffle(configurables)
        lines = []
        for index in range(count):
            want_configurable = (configurable_wanted and index == 0) or rng.random() < 0.25
            if want_configurable and configurables:
                product = configurables.pop()
                variant = rng.choice(product["variants"])
            else:
                product, variant = simples[index], None
            qty = dec(rng.choices([1, 2, 3], weights=[70, 20, 10])[0])
            lines.append(self._line(product, variant, qty, base_currency))
        return lines

    def _line(self, product, variant, qty, base_currency):
        rate = dec(self.settings["catalog_rates"][base_currency])
        base_price = money(dec(product["price"]) * rate)
        if base_currency == "JPY":
            base_price = base_price.quantize(Decimal("1"))
        line = {
            "product_id": product["product_id"],
            "sku": product["sku"],
            "name": product["name"],
            "qty": qty,
            "base_price": base_price,
            "weight": dec(product["weight"]) if product["weight"] is not None else None,
            "child": None,
            "pinned": {},
        }
        if variant is not None:
            options = self.catalog["options"]
            labels = [
                options[option_id]["values"][value]
                for option_id, value in zip(product["options"], variant["values"], strict=True)
            ]
            sku = "-".join([product["sku"], *labels])
            line["sku"] = sku
            line["child"] = {
                "product_id": variant["product_id"],
                "sku": sku,
                "name": "-".join([product["name"], *labels]),
                "options": [
                    {"option_id": option_id, "option_value": int(value)}
                    for option_id, value in zip(product["options"], variant["values"], strict=True)
                ],
            }
        return line

    def _pinned_lines(self, specs, rate):
        """Cart lines from caller-given items (prices in the order currency)."""
        lines = []
        for number, spec in enumerate(specs, start=1):
            spec = dict(spec)
            price = money(spec.get("price", 10))
            qty = dec(spec.get("qty_ordered", 1))
            sku = spec.get("sku", f"SKU-{number}")
            name = spec.get("name", sku)
            line = {
                "product_id": spec.get("product_id", 900 + number),
                "sku": sku,
                "name": name,
                "qty": qty,
                "price": price,
                "base_price": money(price / rate),
                "weight": dec(spec["weight"]) if spec.get("weight") is not None else None,
                "child": None,
                "pinned": spec,
            }
            if spec.get("product_type") == "configurable":
                line["child"] = {
                    "product_id": spec.get("child_product_id", 9000 + number),
                    "sku": sku,
                    "name": spec.get("child_name", f"{name}-{sku}"),
                    "options": [],
                }
            lines.append(line)
        return lines

    # -- orders ------------------------------------------------------------------------------

    def new_order(self, ids, now, kind=None, overrides=None):
        """A new order placed at ``now`` (``YYYY-MM-DD HH:MM:SS`` UTC), ids drawn from ``ids``.

        ``kind`` is one of :data:`KINDS` or None (random). ``overrides`` pins fields:

        * any top-level scalar (``increment_id``, ``customer_email``, ``customer_firstname``,
          ``created_at``, ``store_id``, ``customer_is_guest``, ``state``...): kept exactly;
          pinned e-mail and names also become the address defaults, a registered order's pinned
          e-mail always maps to the same customer (and ``customer_id``), and a pinned
          ``created_at`` is also the first ``updated_at``;
        * ``billing_address`` / ``shipping_address``: dicts laid over the generated address
          (pinning ``region`` or ``country_id`` without the region ids drops the generated ids);
        * ``items``: a list of ``{"sku", "name", "qty_ordered", "price"}`` (order currency; any
          other item field is kept too, ``"product_type": "configurable"`` adds the child row);
        * ``coupon_code``: the cart rule of that coupon applies (its percentage off the items);
        * ``grand_total``: the other totals are balanced to it (no tax, no cart rule; the
          difference to the subtotal becomes shipping, or a discount when the total is lower).

        Pinned money (``grand_total``, ``items``) is read in the default store's currency unless
        ``store_id`` is pinned too. Other amounts are kept as given, without rebalancing.
        """
        pins = dict(overrides or {})
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown order kind {kind!r}; expected one of {', '.join(KINDS)}")
        rng = self.rng
        store_id = pins.get("store_id")
        if store_id not in self.stores:
            # Caller-given amounts read as the default store's currency (base = order currency).
            pinned_money = "grand_total" in pins or "items" in pins
            store_id = 1 if pinned_money else self._pick_store_id()
        store = self.stores[store_id]
        base_currency = store["base_currency"]
        rate = dec(store["base_to_order_rate"])

        guest = pins.get("customer_is_guest")
        if guest is not None:
            guest = bool(guest)
        elif kind is None and ("customer_firstname" in pins or "customer_lastname" in pins):
            # Guest orders carry no customer names; pinned ones mean a customer account.
            guest = False
        else:
            guest = kind == "guest" or (kind is None and rng.random() < 0.35)
        if guest:
            person = self._person(store_id)
        elif "customer_email" in pins:
            person = self._customer_for(pins, store_id)
        else:
            candidates = [c for c in self.customers if c["store_id"] == store_id] or self.customers
            person = rng.choice(candidates)

        email = pins.get("customer_email", person["email"])
        firstname = pins.get("customer_firstname", person["firstname"])
        lastname = pins.get("customer_lastname", person["lastname"])

        billing = dict(person["address"])
        shipping = dict(billing) if rng.random() < 0.85 else self._address(billing["country_id"])
        billing = _lay_over(billing, pins.get("billing_address"))
        shipping = _lay_over(shipping, pins.get("shipping_address") or pins.get("billing_address"))

        pinned_total = pins.get("grand_total")
        if "items" in pins:
            lines = self._pinned_lines(pins["items"], rate)
        elif pinned_total is not None:
            lines = []
        else:
            lines = self._lines(base_currency, configurable_wanted=(kind == "configurable"))
        for line in lines:
            line.setdefault("price", money(line["base_price"] * rate))

        tax_percent, tax_code = self._tax_rate(shipping)
        rule = rng.choice(self.settings["rules"]) if rng.random() < 0.25 else None
        if pins.get("coupon_code"):
            rule = _rule_of_coupon(self.settings["rules"], pins["coupon_code"])
        shipping_method = self._shipping_method(lines, base_currency)

        if pinned_total is not None:
            tax_percent, rule = ZERO, None
            lines, shipping_method, discounts, shipping_amounts = self._balance(
                lines, money(pinned_total), rate
            )
        else:
            discounts = None
            shipping_amounts = self._shipping_amounts(shipping_method, lines, store)

        order_id = ids.next("order")
        shipping_address_id = ids.next("order_address")
        billing_address_id = ids.next("order_address")
        totals = _price(lines, tax_percent, rule, discounts)
        ship_base, ship_order = shipping_amounts
        for currency, amount in (("base", ship_base), ("order", ship_order)):
            part = totals[currency]
            part["grand_total"] = part["subtotal"] - part["discount"] + amount + part["tax"]

        created_at = pins.get("created_at", now)
        rows = self._item_rows(ids, lines, totals, order_id, store_id, created_at, rule)

        order = {
            "applied_rule_ids": rule["rule_id"] if rule else None,
            "base_currency_code": base_currency,
            "base_discount_amount": wire(-totals["base"]["discount"]),
            "base_discount_tax_compensation_amount": 0,
            "base_grand_total": wire(totals["base"]["grand_total"]),
            "base_shipping_amount": wire(ship_base),
            "base_shipping_discount_amount": 0,
            "base_shipping_discount_tax_compensation_amnt": 0,
            "base_shipping_incl_tax": wire(ship_base),
            "base_shipping_tax_amount": 0,
            "base_subtotal": wire(totals["base"]["subtotal"]),
            "base_subtotal_incl_tax": wire(totals["base"]["subtotal_incl_tax"]),
            "base_tax_amount": wire(totals["base"]["tax"]),
            "base_to_global_rate": wire(dec(store["base_to_global_rate"])),
            "base_to_order_rate": wire(rate),
            "base_total_due": wire(totals["base"]["grand_total"]),
            "billing_address_id": billing_address_id,
            "coupon_code": rule["coupon"] if rule else None,
            "created_at": created_at,
            "customer_email": email,
            "customer_group_id": 0 if guest else person["group_id"],
            "customer_is_guest": 1 if guest else 0,
            "customer_note": (
                rng.choice(self.settings["customer_notes"]) if rng.random() < 0.1 else None
            ),
            "customer_note_notify": 1,
            "discount_amount": wire(-totals["order"]["discount"]),
            "discount_description": rule["label"] if rule else None,
            "discount_tax_compensation_amount": 0,
            "entity_id": order_id,
            "global_currency_code": self.settings["global_currency"],
            "grand_total": wire(totals["order"]["grand_total"]),
            "increment_id": ids.increment_id(store_id),
            "is_virtual": 0,
            "order_currency_code": store["order_currency"],
            "protect_code": f"{rng.getrandbits(128):032x}",
            "quote_id": ids.next("quote"),
            "shipping_amount": wire(ship_order),
            "shipping_description": self.settings["shipping"][shipping_method]["description"],
            "shipping_discount_amount": 0,
            "shipping_discount_tax_compensation_amount": 0,
            "shipping_incl_tax": wire(ship_order),
            "shipping_tax_amount": 0,
            "state": "new",
            "status": "pending",
            "store_currency_code": base_currency,
            "store_id": store_id,
            "store_name": store["name"],
            "store_to_base_rate": 0,
            "store_to_order_rate": 0,
            "subtotal": wire(totals["order"]["subtotal"]),
            "subtotal_incl_tax": wire(totals["order"]["subtotal_incl_tax"]),
            "tax_amount": wire(totals["order"]["tax"]),
            "total_due": wire(totals["order"]["grand_total"]),
            "total_item_count": len(lines),
            "total_qty_ordered": wire(sum((line["qty"] for line in lines), ZERO)),
            "updated_at": created_at,
            "weight": wire(
                sum((line["weight"] * line["qty"] for line in lines if line["weight"]), ZERO)
            ),
        }
        if not guest:
            order.update(
                customer_firstname=firstname,
                customer_lastname=lastname,
                customer_id=person["customer_id"],
            )
            if "dob" in person:
                order["customer_dob"] = person["dob"]
            if "gender" in person:
                order["customer_gender"] = person["gender"]
        # Magento leaves optional fields that are null out of its REST output.
        order = {key: order[key] for key in sorted(order) if order[key] is not None}

        customer_address_id = None if guest else person["customer_address_id"]
        if guest:
            # Guest shipping addresses carry customer_address_id 0 on the wire.
            shipping_customer_address_id = 0
        elif shipping == billing:
            shipping_customer_address_id = customer_address_id
        else:
            shipping_customer_address_id = next(self._customer_address_ids)
        order["items"] = rows
        order["billing_address"] = _order_address(
            billing,
            "billing",
            billing_address_id,
            order_id,
            email,
            firstname,
            lastname,
            customer_address_id,
        )
        payment_method = self._payment_method()
        method_title = self.settings["payments"][payment_method]
        order["payment"] = self._payment(payment_method, method_title, order, ids)
        order["status_histories"] = []
        order["extension_attributes"] = {
            "shipping_assignments": [
                {
                    "shipping": {
                        "address": _order_address(
                            shipping,
                            "shipping",
                            shipping_address_id,
                            order_id,
                            email,
                            firstname,
                            lastname,
                            shipping_customer_address_id,
                        ),
                        "method": shipping_method,
                        "total": {
                            "base_shipping_amount": wire(ship_base),
                            "base_shipping_discount_amount": 0,
                            "base_shipping_discount_tax_compensation_amnt": 0,
                            "base_shipping_incl_tax": wire(ship_base),
                            "base_shipping_tax_amount": 0,
                            "shipping_amount": wire(ship_order),
                            "shipping_discount_amount": 0,
                            "shipping_discount_tax_compensation_amount": 0,
                            "shipping_incl_tax": wire(ship_order),
                            "shipping_tax_amount": 0,
                        },
                    },
                    "items": [],
                }
            ],
            "payment_additional_info": [{"key": "method_title", "value": method_title}],
            "applied_taxes": [],
            "item_applied_taxes": [],
        }
        if payment_method == "purchaseorder":
            order["extension_attributes"]["payment_additional_info"].append(
                {"key": "po_number", "value": order["payment"]["po_number"]}
            )
        if totals["order"]["tax"] > 0:
            order["extension_attributes"]["applied_taxes"] = [
                _applied_tax(tax_code, tax_percent, totals["order"]["tax"], totals["base"]["tax"])
            ]
            order["extension_attributes"]["item_applied_taxes"] = [
                {
                    "type": "product",
                    "item_id": row["item_id"],
                    "applied_taxes": [
                        _applied_tax(
                            tax_code, tax_percent, row["tax_amount"], row["base_tax_amount"]
                        )
                    ],
                }
                for row in rows
                if "parent_item_id" not in row and row["tax_amount"]
            ]
        sync_copies(order)

        for key, value in pins.items():
            if key in ("items", "billing_address", "shipping_address", "kind"):
                continue
            order[key] = value
        if "created_at" in pins and "updated_at" not in pins:
            order["updated_at"] = pins["created_at"]
        return order

    def _payment_method(self):
        return self.rng.choices(list(self.settings["payments"]), weights=[5, 2, 2, 1])[0]

    def _payment(self, method, title, order, ids):
        payment = {
            "account_status": None,
            "additional_information": [title],
            "amount_ordered": order["grand_total"],
            "base_amount_ordered": order["base_grand_total"],
            "base_shipping_amount": order["base_shipping_amount"],
            "cc_exp_year": "0",
            "cc_last4": None,
            "cc_ss_start_month": "0",
            "cc_ss_start_year": "0",
            "entity_id": ids.next("payment"),
            "method": method,
            "parent_id": order["entity_id"],
            "shipping_amount": order["shipping_amount"],
        }
        if method == "purchaseorder":
            payment["po_number"] = f"PO-{self.rng.randrange(10000, 99999)}"
        return payment

    def _shipping_method(self, lines, base_currency):
        usd = dec(self.settings["catalog_rates"][base_currency])
        subtotal_usd = sum((line["base_price"] * line["qty"] for line in lines), ZERO) / usd
        free = self.settings["shipping"]["freeshipping_freeshipping"]
        if subtotal_usd >= dec(free["min_subtotal_usd"]) and self.rng.random() < 0.6:
            return "freeshipping_freeshipping"
        return self.rng.choices(["flatrate_flatrate", "tablerate_bestway"], weights=[6, 4])[0]

    def _shipping_amounts(self, method, lines, store):
        """(base, order) shipping amounts for the chosen method."""
        settings = self.settings["shipping"][method]
        usd_rate = dec(self.settings["catalog_rates"][store["base_currency"]])
        weight = sum((line["weight"] * line["qty"] for line in lines if line["weight"]), ZERO)
        usd = dec(settings["base_usd"]) + dec(settings.get("per_kg_usd", 0)) * weight
        base = money(usd * usd_rate)
        if store["base_currency"] == "JPY":
            base = base.quantize(Decimal("1"))
        return base, money(base * dec(store["base_to_order_rate"]))

    def _balance(self, lines, grand_total, rate):
        """Lines, shipping method, line discounts and shipping amounts totalling ``grand_total``.

        Without caller items a single product is made up whose price leaves room for the flat
        rate; with caller items the gap to their subtotal becomes shipping (or a discount).
        """
        flat = money(dec(self.settings["shipping"]["flatrate_flatrate"]["base_usd"]) * rate)
        if not lines:
            product = self.rng.choice(self.catalog["simple"])
            price = grand_total - flat if grand_total > flat * 2 else grand_total
            lines = [
                {
                    "product_id": product["product_id"],
                    "sku": product["sku"],
                    "name": product["name"],
                    "qty": dec(1),
                    "price": price,
                    "base_price": money(price / rate),
                    "weight": dec(product["weight"]) if product["weight"] is not None else None,
                    "child": None,
                    "pinned": {},
                }
            ]
        subtotal = sum((line["price"] * line["qty"] for line in lines), ZERO)
        gap = grand_total - subtotal
        if gap >= 0:
            method = "flatrate_flatrate" if gap > 0 else "freeshipping_freeshipping"
            return lines, method, None, (money(gap / rate), gap)
        weights = [line["price"] * line["qty"] for line in lines]
        order_parts = split(-gap, weights)
        base_parts = split(money(-gap / rate), weights)
        discounts = list(zip(base_parts, order_parts, strict=True))
        return lines, "freeshipping_freeshipping", discounts, (ZERO, ZERO)

    def _item_rows(self, ids, lines, totals, order_id, store_id, created_at, rule):
        rows = []
        for line, base, order in zip(
            lines, totals["base"]["lines"], totals["order"]["lines"], strict=True
        ):
            item_id = ids.next("order_item")
            product_type = "configurable" if line["child"] else "simple"
            row = {
                "amount_refunded": 0,
                "base_amount_refunded": 0,
                "base_discount_amount": wire(base["discount"]),
                "base_discount_invoiced": 0,
                "base_discount_tax_compensation_amount": 0,
                "base_original_price": wire(line["base_price"]),
                "base_price": wire(line["base_price"]),
                "base_price_incl_tax": wire(base["price_incl_tax"]),
                "base_row_invoiced": 0,
                "base_row_total": wire(base["row_total"]),
                "base_row_total_incl_tax": wire(base["row_total_incl_tax"]),
                "base_tax_amount": wire(base["tax"]),
                "base_tax_invoiced": 0,
                "created_at": created_at,
                "discount_amount": wire(order["discount"]),
                "discount_invoiced": 0,
                "discount_percent": wire(dec(rule["percent"])) if rule else 0,
                "discount_tax_compensation_amount": 0,
                "free_shipping": 0,
                "is_qty_decimal": 0,
                "is_virtual": 0,
                "item_id": item_id,
                "name": line["name"],
                "no_discount": 0,
                "order_id": order_id,
                "original_price": wire(line["price"]),
                "price": wire(line["price"]),
                "price_incl_tax": wire(order["price_incl_tax"]),
                "product_id": line["product_id"],
                "product_type": product_type,
                "qty_canceled": 0,
                "qty_invoiced": 0,
                "qty_ordered": wire(line["qty"]),
                "qty_refunded": 0,
                "qty_shipped": 0,
                "quote_item_id": ids.next("quote_item"),
                "row_invoiced": 0,
                "row_total": wire(order["row_total"]),
                "row_total_incl_tax": wire(order["row_total_incl_tax"]),
                "row_weight": wire(line["weight"] * line["qty"]) if line["weight"] else 0,
                "sku": line["sku"],
                "store_id": store_id,
                "tax_amount": wire(order["tax"]),
                "tax_invoiced": 0,
                "tax_percent": wire(order["tax_percent"]),
                "updated_at": created_at,
            }
            if rule or order["discount"]:
                row["applied_rule_ids"] = rule["rule_id"] if rule else "0"
            if line["weight"] is not None:
                row["weight"] = wire(line["weight"])
            for key, value in line["pinned"].items():
                if key not in ("child_name", "child_product_id"):
                    row[key] = value
            row = {key: row[key] for key in sorted(row)}
            if line["child"]:
                row["product_option"] = {
                    "extension_attributes": {
                        "configurable_item_options": line["child"]["options"],
                    }
                }
            rows.append(row)
            if line["child"]:
                rows.append(self._child_row(ids, line, row, order_id, store_id, created_at))
        return rows

    def _child_row(self, ids, line, parent, order_id, store_id, created_at):
        child = line["child"]
        row = {
            "amount_refunded": 0,
            "base_amount_refunded": 0,
            "base_discount_amount": 0,
            "base_discount_invoiced": 0,
            "base_price": 0,
            "base_row_invoiced": 0,
            "base_row_total": 0,
            "base_tax_amount": 0,
            "base_tax_invoiced": 0,
            "created_at": created_at,
            "discount_amount": 0,
            "discount_invoiced": 0,
            "discount_percent": 0,
            "free_shipping": 0,
            "is_qty_decimal": 0,
            "is_virtual": 0,
            "item_id": ids.next("order_item"),
            "name": child["name"],
            "no_discount": 0,
            "order_id": order_id,
            "original_price": 0,
            "parent_item_id": parent["item_id"],
            # The child repeats the parent's unit price but carries no row amounts.
            "price": parent["price"],
            "product_id": child["product_id"],
            "product_type": "simple",
            "qty_canceled": 0,
            "qty_invoiced": 0,
            "qty_ordered": parent["qty_ordered"],
            "qty_refunded": 0,
            "qty_shipped": 0,
            "quote_item_id": ids.next("quote_item"),
            "row_invoiced": 0,
            "row_total": 0,
            "row_weight": 0,
            "sku": child["sku"],
            "store_id": store_id,
            "tax_amount": 0,
            "tax_invoiced": 0,
            "tax_percent": 0,
            "updated_at": created_at,
        }
        if line["weight"] is not None:
            row["weight"] = wire(line["weight"])
        row["parent_item"] = {}
        row["row_total_incl_tax"] = 0
        row["base_row_total_incl_tax"] = 0
        return row


def _lay_over(address, pinned):
    """``address`` with the caller's fields on top, dropping region ids that no longer apply."""
    if not pinned:
        return address
    result = dict(address)
    if ("region" in pinned or "country_id" in pinned) and not (
        "region_id" in pinned or "region_code" in pinned
    ):
        result.pop("region_id", None)
        result.pop("region_code", None)
        if "country_id" in pinned and "region" not in pinned:
            result.pop("region", None)
    result.update(pinned)
    return result


def _order_address(
    address, address_type, entity_id, order_id, email, firstname, lastname, customer_address_id
):
    """An order address in Magento's output: alphabetical keys, region keys only when known."""
    result = {
        "address_type": address_type,
        "email": email,
        "entity_id": entity_id,
        "firstname": firstname,
        "lastname": lastname,
        "parent_id": order_id,
    }
    if customer_address_id is not None:
        result["customer_address_id"] = customer_address_id
    result.update(
        {key: value for key, value in address.items() if key not in ("firstname", "lastname")}
    )
    for key in ("firstname", "lastname", "email"):
        if key in address:
            result[key] = address[key]
    return {key: result[key] for key in sorted(result)}


def _applied_tax(code, percent, amount, base_amount):
    return {
        "code": code,
        "title": code,
        "percent": wire(percent),
        "amount": wire(amount),
        "base_amount": wire(base_amount),
    }


def _rule_of_coupon(rules, code):
    """The cart rule whose coupon is ``code`` (ValueError for an unknown one)."""
    for rule in rules:
        if rule.get("coupon") and rule["coupon"].lower() == str(code).lower():
            return rule
    raise ValueError(f"no cart rule has the coupon {code!r}")


def _price(lines, tax_percent, rule, discounts):
    """Line and order totals in both currencies: tax after discount, rounded per row."""
    totals = {}
    for currency, price_key in (("base", "base_price"), ("order", "price")):
        rows = []
        for index, line in enumerate(lines):
            price = line[price_key]
            row_total = money(price * line["qty"])
            if discounts is not None:
                discount = discounts[index][0 if currency == "base" else 1]
            elif rule:
                discount = money(row_total * dec(rule["percent"]) / HUNDRED)
            else:
                discount = ZERO
            tax = money((row_total - discount) * tax_percent / HUNDRED)
            rows.append(
                {
                    "row_total": row_total,
                    "discount": discount,
                    "tax": tax,
                    "tax_percent": tax_percent,
                    "price_incl_tax": money(price * (HUNDRED + tax_percent) / HUNDRED),
                    "row_total_incl_tax": row_total + money(row_total * tax_percent / HUNDRED),
                }
            )
        subtotal = sum((r["row_total"] for r in rows), ZERO)
        discount = sum((r["discount"] for r in rows), ZERO)
        tax = sum((r["tax"] for r in rows), ZERO)
        totals[currency] = {
            "lines": rows,
            "subtotal": subtotal,
            "discount": discount,
            "tax": tax,
            "subtotal_incl_tax": sum((r["row_total_incl_tax"] for r in rows), ZERO),
        }
    return totals
