-- 02_workspace_members_cascade.sql
--
-- What it does: the diagnosis report's Option 3 migration. It (re)creates the foreign
-- key workspace_members.workspace_id -> workspaces.id with ON DELETE CASCADE, so that
-- deleting a workspace deletes its memberships. Idempotent: it drops the constraint if
-- present and adds it back. The constraint is added NOT VALID and validated in a
-- second step, so the long check does not hold the strong lock.
--
-- It does NOT change users.primary_workspace_id -> workspaces.id
-- (users_primary_workspace_id_workspaces_id_fk), which has no ON DELETE action: the
-- constraint the incident's error names is untouched by this migration.
--
-- For review: apply with your own migration tool. The kit never runs this file
-- against a real database; the race lab runs it on its scratch database only.
--
-- @VERIFIED@

-- Check first (read-only): the foreign keys workspace_members has now.
select conname, pg_get_constraintdef(oid) as definition
from pg_constraint
where conrelid = 'workspace_members'::regclass and contype = 'f'
order by conname;

begin;
set local lock_timeout = '5s';
alter table workspace_members
    drop constraint if exists workspace_members_workspace_id_workspaces_id_fk;
alter table workspace_members
    add constraint workspace_members_workspace_id_workspaces_id_fk
    foreign key (workspace_id) references workspaces (id) on delete cascade
    not valid;
commit;

begin;
set local lock_timeout = '5s';
alter table workspace_members
    validate constraint workspace_members_workspace_id_workspaces_id_fk;
commit;
