// packages/web/src/server/utils/workspace.ts: run the unchanged body as SERIALIZABLE
// and retry the whole transaction on serialization failures (SQLSTATE 40001).
const MAX_ATTEMPTS = 3;

export async function ensureUserWorkspace(userId: string) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.transaction((tx) => ensureUserWorkspaceTx(tx, userId), {
        isolationLevel: 'serializable',
      });
    } catch (err) {
      const code = (err as any)?.code ?? (err as any)?.cause?.code;
      if (code === '40001' && attempt < MAX_ATTEMPTS) continue;
      throw err;
    }
  }
}
