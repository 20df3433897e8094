-- Foreign keys the kit has never seen, for tests/test_any_constraint.py.
-- Every kind of foreign key the kit must discover: composite (MATCH SIMPLE and MATCH FULL),
-- ON DELETE CASCADE / SET NULL, DEFERRABLE INITIALLY DEFERRED, NOT VALID with stored violations,
-- a partitioned referencing table, quoted identifiers, a self-reference, two keys into one table
-- (paths), and one constraint name in two schemas. The rows are counted by hand in the tests.
create schema shop;
create schema archive;

-- Two composite foreign keys into warehouses: the paths of each other.
create table shop.warehouses (
    region text not null,
    code integer not null,
    name text,
    primary key (region, code)
);
create table shop.bins (
    id integer primary key,
    region text,
    code integer,
    constraint bins_warehouse_fk foreign key (region, code)
        references shop.warehouses (region, code) on delete cascade
);
create table shop.pallets (
    id integer primary key,
    region text,
    code integer,
    constraint pallets_warehouse_fk foreign key (region, code)
        references shop.warehouses (region, code) match full on delete set null on update cascade
);

insert into shop.warehouses values ('north', 1, 'N1'), ('north', 2, 'N2'), ('south', 1, 'S1'),
    ('east, west', 3, 'a region with a comma');
-- bins: 6 rows; MATCH SIMPLE: 2 with a NULL column (1 any-null only, 1 all-null), none dangling
insert into shop.bins values (1, 'north', 1), (2, 'north', 2), (3, 'south', 1),
    (4, 'north', null), (5, null, null), (6, 'east, west', 3);
-- pallets: 4 rows; MATCH FULL allows only all-NULL: 1
insert into shop.pallets values (1, 'north', 1), (2, 'south', 1), (3, null, null), (4, 'north', 2);

-- Customers, orders (deferrable), order lines (NOT VALID with stored violations).
create table shop.customers (
    id integer primary key,
    name text not null
);
create table shop.orders (
    id integer primary key,
    customer_id integer,
    constraint orders_customer_fk foreign key (customer_id) references shop.customers (id)
        deferrable initially deferred
);
create table shop.order_lines (
    id integer primary key,
    order_id integer,
    sku text
);
insert into shop.customers select g, 'customer ' || g from generate_series(1, 5) g;
insert into shop.orders values (10, 1), (11, 2), (12, 2), (13, null), (14, 5);
-- order lines: 8 rows, 1 NULL key, 3 dangling (order 98 twice, order 99 once)
insert into shop.order_lines values (1, 10, 'a'), (2, 10, 'b'), (3, 11, 'c'), (4, 12, 'd'),
    (5, null, 'e'), (6, 98, 'f'), (7, 98, 'g'), (8, 99, 'h');
alter table shop.order_lines add constraint order_lines_order_fk
    foreign key (order_id) references shop.orders (id) on delete cascade not valid;

-- A partitioned referencing table: the constraint lives on the parent, its partitions get clones.
create table shop.events (
    id integer not null,
    at date not null,
    customer_id integer,
    primary key (id, at),
    constraint events_customer_fk foreign key (customer_id) references shop.customers (id) on delete set null
) partition by range (at);
create table shop.events_2025 partition of shop.events for values from ('2025-01-01') to ('2026-01-01');
create table shop.events_2026 partition of shop.events for values from ('2026-01-01') to ('2027-01-01');
-- events: 5 rows, 1 NULL key
insert into shop.events values (1, '2025-03-01', 1), (2, '2025-04-01', 3), (3, '2026-02-01', 3),
    (4, '2026-03-01', null), (5, '2026-04-01', 4);

-- Quoted identifiers.
create table shop."Gift Cards" (
    "Card Id" integer primary key,
    "Order Ref" integer,
    constraint "gift cards → orders" foreign key ("Order Ref") references shop.orders (id)
);
insert into shop."Gift Cards" values (1, 10), (2, null);

-- A self-reference.
create table shop.categories (
    id integer primary key,
    parent_id integer references shop.categories (id) on delete set null
);
insert into shop.categories values (1, null), (2, 1), (3, 2);

-- The same constraint name in another schema.
create table archive.customers (
    id integer primary key
);
create table archive.orders (
    id integer primary key,
    customer_id integer,
    constraint orders_customer_fk foreign key (customer_id) references archive.customers (id)
);
insert into archive.customers values (1);
insert into archive.orders values (1, 1);
