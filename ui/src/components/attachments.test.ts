// Attachments in the desktop UI (issue 17): the file picker, a pasted image and files dropped on
// the window become one message each; its upload shows progress and can be cancelled; images
// show inline at a size reserved before they load and open in a full view (zoom, save, Escape,
// Tab kept inside); other files are cards with open and save. Through the mock backend, which
// answers like the Rust side (docs/ipc.md: stage_file, send_files, natter://upload, ...).
import { describe, expect, it } from "vitest";
import { fireEvent, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { fire, renderApp, teamFake } from "../test/harness";
import { estimateRow } from "../lib/rows";

type Fake = ReturnType<typeof teamFake>;

async function openGeneral() {
  const fake = teamFake();
  const general = fake.addRoom("general", ["alice", "bob"]);
  fake.deliver(general, "bob", "hello", Date.now() - 3_000);
  fake.state.last_conversation = general.id;
  await renderApp();
  await screen.findByTestId("composer");
  await waitFor(() => expect(screen.getAllByTestId("message")).toHaveLength(1));
  return { fake, general, user: userEvent.setup() };
}

const callsOf = (fake: Fake, cmd: string) => fake.calls.filter((c) => c.cmd === cmd).map((c) => c.args);
const png = (name = "cat.png", size = 2048) => new File([new Uint8Array(size).fill(7)], name, { type: "image/png" });
const last = () => screen.getAllByTestId("message").at(-1)!;

describe("attachments", () => {
  it("the file picker sends the picked files with the typed text as their caption", async () => {
    const { fake, general, user } = await openGeneral();
    await user.type(screen.getByTestId("composer"), "our cat");
    await user.upload(screen.getByTestId("file-input"), png());
    await waitFor(() => expect(callsOf(fake, "send_files")).toHaveLength(1));
    const staged = callsOf(fake, "stage_file");
    expect(staged).toHaveLength(1);
    expect((staged[0] as unknown as Uint8Array).length).toBe(2048);
    expect(callsOf(fake, "send_files")[0]).toEqual({ conv: general.id, paths: ["/profile/staged/1/pasted.png"], text: "our cat" });
    expect(screen.getByTestId("composer")).toHaveValue("");
    await waitFor(() => expect(last().dataset.state).toBe("sent"));
    expect(within(last()).getByTestId("message-text").textContent).toBe("our cat");
    expect(within(last()).getByTestId("image-attachment")).toBeInTheDocument();
  });

  it("an image pasted into the composer is sent; pasted text is not", async () => {
    const { fake } = await openGeneral();
    const box = screen.getByTestId("composer");
    await fireEvent.paste(box, { clipboardData: { files: [], types: ["text/plain"], getData: () => "words" } });
    expect(callsOf(fake, "stage_file")).toHaveLength(0);
    await fireEvent.paste(box, { clipboardData: { files: [png("")], types: ["Files"] } });
    await waitFor(() => expect(callsOf(fake, "send_files")).toHaveLength(1));
    expect(callsOf(fake, "send_files")[0].text).toBe("");
    await waitFor(() => expect(last().dataset.state).toBe("sent"));
    // A message of files alone has no empty text line.
    expect(within(last()).queryByTestId("message-text")).toBeNull();
  });

  it("files dropped on the window go to the open conversation as cards with open and save", async () => {
    const { fake, general, user } = await openGeneral();
    fake.files.set("/home/alice/report.pdf", 1536);
    await fire("tauri://drag-drop", { paths: ["/home/alice/report.pdf"] });
    await waitFor(() => expect(callsOf(fake, "send_files")).toEqual([{ conv: general.id, paths: ["/home/alice/report.pdf"], text: "" }]));
    await waitFor(() => expect(last().dataset.state).toBe("sent"));
    const card = within(last()).getByTestId("file-card");
    expect(within(card).getByTestId("file-name").textContent).toBe("report.pdf");
    expect(within(card).getByTestId("file-size").textContent).toBe("1.5 KB");
    await user.click(within(card).getByTestId("file-open"));
    expect(callsOf(fake, "launch_file")).toHaveLength(1);
    await user.click(within(card).getByTestId("file-save"));
    expect(callsOf(fake, "save_file")[0].file).toMatchObject({ name: "report.pdf", size: 1536 });
    expect(await screen.findByText("Saved to /home/alice/Downloads/report.pdf")).toBeInTheDocument();
    // A refused file (gone from the disk) is said, and nothing is added.
    await fire("tauri://drag-drop", { paths: ["/home/alice/gone.txt"] });
    expect(await screen.findByText(/cannot read \/home\/alice\/gone.txt/)).toBeInTheDocument();
    expect(screen.getAllByTestId("message")).toHaveLength(2);
  });

  it("a pending upload shows its progress and can be cancelled", async () => {
    const { fake, user } = await openGeneral();
    fake.holdUploads = true;
    await user.upload(screen.getByTestId("file-input"), png("big.png", 4000));
    await waitFor(() => expect(last().dataset.state).toBe("pending"));
    const bar = within(last()).getByTestId("upload-progress") as HTMLProgressElement;
    expect(bar.getAttribute("aria-label")).toBe("Waiting to upload pasted.png");
    const id = last().dataset.localId!;
    fake.progressUpload(id, 1000);
    await waitFor(() => expect(bar.value).toBe(25));
    expect(bar.getAttribute("aria-label")).toBe("Uploading pasted.png: 25%");
    await user.click(within(last()).getByTestId("upload-cancel"));
    expect(callsOf(fake, "cancel_upload")).toEqual([{ localId: id }]);
    await waitFor(() => expect(screen.getAllByTestId("message")).toHaveLength(1));
    expect(fake.convs[0].messages.some((m) => m.local_id === id)).toBe(false);
  });

  it("an image's box has its drawn size before the image loads, and the row's estimate counts it", async () => {
    const { fake, general } = await openGeneral();
    const m = fake.deliver(general, "bob", "");
    m.attachments = [{ id: "f9", name: "wide.png", media_type: "image/png", size: 5, width: 1280, height: 480, thumbnail: "tf9" }];
    await fire("natter://message", { change: "added", message: m });
    const box = await screen.findByTestId("image-attachment");
    // 1280 x 480 scaled into 320 x 240: 320 x 120, set on the box itself.
    expect(box.style.width).toBe("320px");
    expect(box.style.height).toBe("120px");
    await waitFor(() => expect(box.querySelector("img")?.getAttribute("src")).toBe("natter-file://localhost/thumbnails/tf9"));
    const plain = estimateRow({ kind: "msg", key: "a", msg: { ...m, attachments: undefined }, grouped: false });
    expect(estimateRow({ kind: "msg", key: "a", msg: m, grouped: false })).toBe(plain + 120 + 6);
  });

  it("the full view zooms with the keyboard, saves, keeps Tab inside and closes on Escape", async () => {
    const { fake, general, user } = await openGeneral();
    const m = fake.deliver(general, "bob", "look");
    m.attachments = [{ id: "f7", name: "view.png", media_type: "image/png", size: 5, width: 100, height: 50, thumbnail: "tf7" }];
    await fire("natter://message", { change: "added", message: m });
    const open = await screen.findByTestId("image-attachment");
    expect(open).toHaveAccessibleName("Open image view.png");
    await user.click(open);
    const viewer = await screen.findByTestId("image-viewer");
    const img = await within(viewer).findByTestId("viewer-image");
    expect(callsOf(fake, "open_file")[0].file).toMatchObject({ id: "f7" });
    expect(img.getAttribute("src")).toBe("natter-file://localhost/files/f7/view.png");
    expect(img.dataset.zoom).toBe("1");
    await user.keyboard("+");
    expect(img.dataset.zoom).toBe("1.5");
    expect(img.getAttribute("width")).toBe("150");
    await user.keyboard("--");
    expect(img.dataset.zoom).toBe("0.5");
    await user.keyboard("0");
    expect(img.dataset.zoom).toBe("1");
    // Tab cycles through the view's buttons only.
    const buttons = within(viewer).getAllByRole("button");
    for (let i = 0; i < buttons.length + 2; i++) {
      await user.tab();
      expect(viewer.contains(document.activeElement)).toBe(true);
    }
    await user.click(within(viewer).getByTestId("viewer-save"));
    expect(callsOf(fake, "save_file")[0].file).toMatchObject({ id: "f7" });
    await user.keyboard("{Escape}");
    await waitFor(() => expect(screen.queryByTestId("image-viewer")).toBeNull());
    await waitFor(() => expect(screen.getByTestId("image-attachment")).toHaveFocus());
  });
});
