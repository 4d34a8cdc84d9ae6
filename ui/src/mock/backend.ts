/**
 * The `?mock` dev preview: a FakeBackend filled with a believable team and history, wired in
 * through Tauri's own `mockIPC` (with event mocking) so the real `api.ts` path is used.
 * Query flags: `phase=setup|signed_out`, `theme=light|dark`, `lang=zh-CN`, `offline`.
 */
import { mockIPC, mockWindows } from "@tauri-apps/api/mocks";
import { emitAppEvent } from "./events";
import { FakeBackend } from "./fake";

export function installMockBackend(params: URLSearchParams): FakeBackend {
  mockWindows("main");
  const fake = new FakeBackend((event, payload) => void emitAppEvent(event, payload), {
    server_url: "http://192.168.1.23:8686",
  });
  const zh = params.get("lang") === "zh-CN";
  fake.state.settings.language = zh ? "zh-CN" : "en";
  const theme = params.get("theme");
  if (theme === "light" || theme === "dark") fake.state.settings.theme = theme;

  fake.addUser("alice", "Alice Martin", "🦊", true);
  fake.addUser("bob", "Bob Chen", "🐼", true);
  fake.addUser("carol", "Carol Díaz", "🦉", true);
  fake.addUser("dave", "Dave Okafor", "🐳", false);
  fake.addUser("erin", "Erin Walsh", "🌻", false);

  const general = fake.addRoom("general", ["alice", "bob", "carol", "dave", "erin"]);
  const design = fake.addRoom("design", ["alice", "carol", "erin"]);
  const random = fake.addRoom("random", ["alice", "bob", "dave"]);
  const dmBob = fake.addDm("alice", "bob");
  const dmCarol = fake.addDm("alice", "carol");

  const lines = zh
    ? ["早上好！", "今天的站会改到十点半。", "好的 👍", "我把设计稿放到共享盘了。\n新手引导流程在第二个标签页，周五前欢迎提意见。", "午饭一起吗？", "构建通过了 🎉", "稍等，我看一下", "收到"]
    : ["Morning all!", "Stand-up moved to 10:30 today.", "Sounds good 👍", "I pushed the new mockups to the shared drive.\nThe onboarding flow is in the second tab — comments welcome before Friday.", "Lunch at noon?", "Build is green again 🎉", "Give me a minute, checking", "On it"];
  const people = ["bob", "carol", "dave", "erin", "alice"];
  const now = Date.now();
  // A long history so scrolling and virtualisation can be tried: ~3,000 messages over 10 days.
  const n = 3000;
  for (let i = 0; i < n; i++) {
    // Runs of a few messages per sender, so grouping shows.
    const sender = people[(Math.floor(i / 3) * 3 + (i % 7 === 0 ? 1 : 0)) % people.length];
    fake.deliver(general, sender, lines[i % lines.length], now - (n - i) * 290_000);
  }
  fake.deliver(design, "carol", zh ? "新的配色方案怎么样？" : "What do you think of the new colour palette?", now - 3_600_000);
  fake.deliver(design, "erin", zh ? "深色模式很漂亮" : "Dark mode looks great", now - 3_000_000);
  fake.deliver(random, "dave", zh ? "有人看了昨晚的比赛吗？" : "Anyone watch the match last night?", now - 86_400_000 * 2);
  fake.deliver(dmBob, "bob", zh ? "你有空看看我的 PR 吗？" : "Could you look at my PR when you have a sec?", now - 600_000);
  fake.deliver(dmCarol, "alice", zh ? "谢谢！" : "Thanks!", now - 7_200_000);
  general.lastRead.set("alice", n - 3);
  dmCarol.lastRead.set("alice", 1);

  const phase = params.get("phase");
  if (phase === "setup") fake.state.phase = "setup";
  else if (phase === "signed_out") fake.state.phase = "signed_out";
  else {
    fake.state.phase = "ready";
    fake.state.user = fake.users.get("alice")!.user;
    fake.state.last_conversation = general.id;
    fake.state.connection = params.has("offline")
      ? { state: "offline", retry_at: now + 12_000, reason: "connection refused" }
      : { state: "online" };
  }

  mockIPC((cmd, args) => fake.handle(cmd, (args ?? {}) as Record<string, unknown>), { shouldMockEvents: true });

  // A little life: Bob types in the DM and replies now and then.
  if (!params.has("still")) {
    setInterval(() => {
      if (fake.state.phase !== "ready") return;
      void emitAppEvent("natter://typing", { conv: general.id, username: "bob" });
      setTimeout(() => fake.receive(general, "bob", lines[Math.floor(Math.random() * lines.length)]), 2500);
    }, 20_000);
  }
  return fake;
}
