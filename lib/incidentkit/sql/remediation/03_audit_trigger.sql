-- 03_audit_trigger.sql
--
-- What it does: installs the row-level audit log of the kit's reference schema
-- (audit.logged_actions, in the shape of "audit trigger 91plus" with jsonb) and its
-- triggers on workspaces, workspace_members and users, for databases that keep no
-- deletion timestamps. From then on every insert, update and delete on those tables
-- is logged with the transaction's, statement's and wall-clock timestamps, so the next
-- incident can be timed exactly. Idempotent: safe to run again.
--
-- Cost: one extra insert into audit.logged_actions per changed row, in the same
-- transaction; plan retention (the table grows without bound).
--
-- For review: apply with your own migration tool. The kit never runs this file
-- against a real database; the race lab runs it on its scratch database only.
--
-- @VERIFIED@

begin;
set local lock_timeout = '5s';

create schema if not exists audit;

create table if not exists audit.logged_actions (
    event_id           bigserial primary key,
    schema_name        text not null,
    table_name         text not null,
    relid              oid not null,
    session_user_name  text,
    action_tstamp_tx   timestamptz not null,  -- start of the transaction
    action_tstamp_stm  timestamptz not null,  -- start of the statement
    action_tstamp_clk  timestamptz not null,  -- wall clock when the row changed
    transaction_id     bigint,
    application_name   text,
    client_addr        inet,
    client_port        integer,
    client_query       text,
    action             char(1) not null check (action in ('I', 'D', 'U', 'T')),
    row_data           jsonb,                 -- the row before a D or U, the new row for an I
    changed_fields     jsonb,                 -- for U: the columns that changed, new values
    statement_only     boolean not null
);

create index if not exists logged_actions_table_action_idx
    on audit.logged_actions (table_name, action, action_tstamp_clk);
create index if not exists logged_actions_row_id_idx
    on audit.logged_actions ((row_data ->> 'id'));

create or replace function audit.if_modified_func() returns trigger
language plpgsql security definer set search_path = pg_catalog, public as $$
declare
    old_json jsonb;
    new_json jsonb;
begin
    if tg_op in ('UPDATE', 'DELETE') then old_json := to_jsonb(old); end if;
    if tg_op in ('UPDATE', 'INSERT') then new_json := to_jsonb(new); end if;
    insert into audit.logged_actions (
        schema_name, table_name, relid, session_user_name,
        action_tstamp_tx, action_tstamp_stm, action_tstamp_clk, transaction_id,
        application_name, client_addr, client_port, client_query,
        action, row_data, changed_fields, statement_only)
    values (
        tg_table_schema, tg_table_name, tg_relid, session_user::text,
        transaction_timestamp(), statement_timestamp(), clock_timestamp(), txid_current(),
        current_setting('application_name', true), inet_client_addr(), inet_client_port(),
        current_query(),
        substring(tg_op, 1, 1),
        coalesce(old_json, new_json),
        case when tg_op = 'UPDATE' then (
            select jsonb_object_agg(n.key, n.value)
            from jsonb_each(new_json) n
            where not (old_json ? n.key) or old_json -> n.key is distinct from n.value)
        end,
        false);
    return null;
end;
$$;

drop trigger if exists workspaces_audit on workspaces;
create trigger workspaces_audit
    after insert or update or delete on workspaces
    for each row execute function audit.if_modified_func();

drop trigger if exists workspace_members_audit on workspace_members;
create trigger workspace_members_audit
    after insert or update or delete on workspace_members
    for each row execute function audit.if_modified_func();

drop trigger if exists users_audit on users;
create trigger users_audit
    after insert or update or delete on users
    for each row execute function audit.if_modified_func();

commit;
