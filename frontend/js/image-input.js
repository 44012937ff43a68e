// Choosing images: a file picker, drag and drop onto a zone, or paste from the clipboard.
export function attachImageInput({ zone, input, preview, multiple = false, onChange }) {
  let files = [];

  function accept(list) {
    const images = [...list].filter((file) => file.type.startsWith("image/"));
    if (!images.length) return;
    files = multiple ? files.concat(images) : images.slice(0, 1);
    showPreview();
    onChange(files);
  }

  function showPreview() {
    preview.replaceChildren(...files.map((file) => {
      const img = document.createElement("img");
      img.src = URL.createObjectURL(file);
      img.alt = `chosen image ${file.name || "from the clipboard"}`;
      return img;
    }));
  }

  input.addEventListener("change", () => accept(input.files));
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    accept(event.dataTransfer.files);
  });
  document.addEventListener("paste", (event) => accept(event.clipboardData?.files ?? []));
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });

  return {
    files: () => files,
    clear() {
      files = [];
      preview.replaceChildren();
      input.value = "";
    },
  };
}
