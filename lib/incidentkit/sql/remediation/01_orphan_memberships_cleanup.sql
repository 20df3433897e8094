-- 01_orphan_memberships_cleanup.sql
--
-- What it does: finds workspace memberships whose workspace no longer exists (the
-- "orphaned memberships" of the diagnosis report, Option 2 step 1), lists them, then
-- deletes them in one transaction. Read-only up to the BEGIN: run the dry run first,
-- read its output, and only then run the transaction (or stop before it).
--
-- With the ON DELETE CASCADE foreign key on workspace_members.workspace_id in place
-- (the reference schema has it), orphans cannot exist and the delete removes 0 rows.
-- Tables: workspaces, workspace_members (the production names; adapt if yours differ).
--
-- For review: apply with your own migration tool. The kit never runs this file
-- against a real database; the race lab runs it on its scratch database only.
--
-- @VERIFIED@

-- Dry run 1/2: how many orphaned memberships there are.
select count(*) as orphaned_memberships
from workspace_members wm
where not exists (select 1 from workspaces w where w.id = wm.workspace_id);

-- Dry run 2/2: which ones (the first 1000, oldest first).
select wm.id, wm.workspace_id, wm.user_id, wm.is_primary, wm.joined_at
from workspace_members wm
where not exists (select 1 from workspaces w where w.id = wm.workspace_id)
order by wm.joined_at, wm.id
limit 1000;

-- The cleanup, in one transaction. RETURNING lists what was deleted; compare it with
-- the dry run before COMMIT if you run this interactively.
begin;
set local lock_timeout = '5s';
set local statement_timeout = '60s';
delete from workspace_members wm
where not exists (select 1 from workspaces w where w.id = wm.workspace_id)
returning wm.id, wm.workspace_id, wm.user_id;
commit;
